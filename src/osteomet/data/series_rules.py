"""What each series of a DICOM export is (T2, high-b DWI, ADC, CT, localiser, other) and which one to use.

The rules are data: ``series_rules.yaml`` next to this module (description patterns, tag
conditions, the vendors' b-value conventions), extended by a user's YAML, and a picai_prep
``dcm2mha`` mapping JSON accepted as it is. A series takes the role of the first rule that
matches it, and that rule's name and reason are recorded, so every decision can be checked in
``series.csv``.

Choosing per patient: one study (the one with a complete bpMRI; of several, the latest), then per
role the candidate with the highest score (the rule's score, then the role's own measure: highest
b-value, finest T2 pixels, ADC on the DWI's grid, CT kernel/thickness/coverage). Two candidates
with equal scores are *ambiguous*: the patient is listed with both, never resolved silently, and
the user settles it with a mapping (``{"mappings": {"adc": {"SeriesInstanceUID": ["..."]}}}``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from osteomet.data.dicom_tree import BValueSource, ScanSettings, SeriesInfo
from osteomet.errors import InputError

Role = Literal["t2", "dwi", "adc", "ct", "localiser", "other"]
MRI_ROLES = ("t2", "dwi", "adc")
IMAGE_ROLES = ("t2", "dwi", "adc", "ct")
RULES_FILE = Path(__file__).with_name("series_rules.yaml")
#: Score of a series a user's mapping names: above every rule.
MAPPING_SCORE = 100
#: picai_prep mapping names and the roles they stand for.
PICAI_ROLES = {"t2w": "t2", "t2": "t2", "hbv": "dwi", "dwi": "dwi", "adc": "adc", "ct": "ct"}
_PLACEHOLDERS = {"description": "", "orientation": "", "b_max": "", "b_values": "", "b_source": "", "image_type": "",
                 "kernel": "", "echo_time": "", "repetition_time": "", "body_part": "", "modality": ""}


def _regex(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    try:
        re.compile(value, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"{what} {value!r} is not a regular expression ({exc})") from None
    return value


def _tag(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\(?\s*([0-9A-Fa-f]{4})\s*[,|]\s*([0-9A-Fa-f]{4})\s*\)?", text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a DICOM tag (write it as 'gggg,eeee', e.g. '0018,9087')")
    return int(match[1], 16), int(match[2], 16)


class BValueTag(BaseModel):
    """A b-value convention: a standard tag, or a vendor's private element with its creator."""

    model_config = ConfigDict(extra="forbid")

    name: str
    tag: str
    creator: str | None = None

    @field_validator("tag")
    @classmethod
    def _valid_tag(cls, value: str) -> str:
        _tag(value)
        return value

    def source(self) -> BValueSource:
        return BValueSource(self.name, _tag(self.tag), self.creator)


class BValuePatterns(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sequence_name: list[str] = Field(default_factory=list)
    description: list[str] = Field(default_factory=list)

    @field_validator("sequence_name", "description")
    @classmethod
    def _valid(cls, values: list[str]) -> list[str]:
        for value in values:
            _regex(value, "b-value pattern")
            if re.compile(value).groups < 1:
                raise ValueError(f"b-value pattern {value!r} has no group: put the number in (parentheses)")
        return values


class CTPreferences(BaseModel):
    model_config = ConfigDict(extra="forbid")

    preferred_kernel: str = ""
    avoided_kernel: str = ""
    slice_thickness_mm: tuple[float, float] = (1.0, 5.0)

    @field_validator("preferred_kernel", "avoided_kernel")
    @classmethod
    def _valid(cls, value: str) -> str:
        return _regex(value, "kernel pattern") or ""


class Rule(BaseModel):
    """One classification rule: every condition it names must hold (see the comments of series_rules.yaml)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    role: Role
    score: int = Field(1, ge=0, lt=MAPPING_SCORE)
    why: str
    modality: list[str] | None = None
    not_modality: list[str] | None = None
    image_type: list[str] | None = None
    not_image_type: list[str] | None = None
    description: str | None = None
    not_description: str | None = None
    orientation: list[Literal["axial", "sagittal", "coronal", "mixed", "unknown"]] | None = None
    b_value_min: float | Literal["high_b_min"] | None = None
    b_value_below: float | Literal["high_b_min"] | None = None
    b_value_known: bool | None = None
    b_value_from: list[Literal["tag", "sequence_name", "description"]] | None = None
    echo_time_min: float | None = None
    repetition_time_min: float | None = None
    scanning_sequence: list[str] | None = None
    not_scanning_sequence: list[str] | None = None
    body_part: list[str] | None = None
    not_body_part: list[str] | None = None

    @field_validator("description", "not_description")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        return _regex(value, "pattern")

    @field_validator("modality", "not_modality", "image_type", "not_image_type", "scanning_sequence",
                     "not_scanning_sequence", "body_part", "not_body_part")
    @classmethod
    def _upper(cls, values: list[str] | None) -> list[str] | None:
        return None if values is None else [str(v).strip().upper() for v in values]

    @field_validator("why")
    @classmethod
    def _valid_why(cls, value: str) -> str:
        try:
            value.format_map(_PLACEHOLDERS)
        except (KeyError, ValueError, IndexError) as exc:
            raise ValueError(f"why {value!r} names an unknown field {exc} (known: {', '.join(_PLACEHOLDERS)})") from None
        return value

    def matches(self, s: SeriesInfo, b: "BValues") -> bool:
        def any_of(values: Sequence[str], wanted: list[str] | None) -> bool:
            return wanted is None or bool(set(values) & set(wanted))

        def none_of(values: Sequence[str], unwanted: list[str] | None) -> bool:
            return unwanted is None or not set(values) & set(unwanted)

        description = s.description or ""
        checks = (
            self.modality is None or s.modality in self.modality,
            self.not_modality is None or s.modality not in self.not_modality,
            any_of(s.image_type, self.image_type),
            none_of(s.image_type, self.not_image_type),
            self.description is None or re.search(self.description, description, re.IGNORECASE) is not None,
            self.not_description is None or re.search(self.not_description, description, re.IGNORECASE) is None,
            self.orientation is None or s.orientation in self.orientation,
            self.b_value_min is None or (b.max is not None and b.max >= self.b_value_min),
            self.b_value_below is None or (b.max is not None and b.max < self.b_value_below),
            self.b_value_known is None or (b.max is not None) == self.b_value_known,
            self.b_value_from is None or b.kind in self.b_value_from,
            self.echo_time_min is None or (s.echo_time is not None and s.echo_time >= self.echo_time_min),
            self.repetition_time_min is None or (s.repetition_time is not None
                                                 and s.repetition_time >= self.repetition_time_min),
            any_of(s.scanning_sequence, self.scanning_sequence),
            none_of(s.scanning_sequence, self.not_scanning_sequence),
            self.body_part is None or s.body_part in self.body_part,
            self.not_body_part is None or s.body_part not in self.not_body_part,
        )
        return all(checks)


class RuleSet(BaseModel):
    """The shipped rules, possibly extended by a user's YAML."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    high_b_min: float = Field(800, gt=0)
    b_value_tags: list[BValueTag] = Field(default_factory=list)
    b_value_patterns: BValuePatterns = Field(default_factory=BValuePatterns)
    ct: CTPreferences = Field(default_factory=CTPreferences)
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> "RuleSet":
        names = [r.name for r in self.rules]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"rule names must be unique (repeated: {', '.join(duplicated)})")
        for rule in self.rules:  # 'high_b_min' in a rule stands for the setting
            for name in ("b_value_min", "b_value_below"):
                if getattr(rule, name) == "high_b_min":
                    object.__setattr__(rule, name, float(self.high_b_min))
        return self

    def scan_settings(self, mapping: "SeriesMapping | None" = None) -> ScanSettings:
        return ScanSettings(b_value_sources=tuple(t.source() for t in self.b_value_tags),
                            sequence_b_patterns=tuple(self.b_value_patterns.sequence_name),
                            extra_tags=tuple(mapping.tags) if mapping else ())


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read the rules file ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not a valid YAML file ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a rules file is a mapping with keys such as 'rules', 'b_value_tags', 'ct'")
    return data


def _validated(data: dict[str, Any], path: Path) -> RuleSet:
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            if err["loc"][:1] == ("rules",) and len(err["loc"]) > 1 and isinstance(err["loc"][1], int):
                rules = data.get("rules") or []
                index = err["loc"][1]
                name = rules[index].get("name") if index < len(rules) and isinstance(rules[index], dict) else None
                where += f" (rule {name!r})" if name else ""
            problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise InputError(f"{path}: {len(problems)} problem(s) in the series rules: " + "; ".join(problems)) from None


def load_rules(extra: str | Path | None = None) -> RuleSet:
    """The shipped rules, with a user's YAML merged in: its rules first, its conventions added, its settings replacing."""
    shipped = _read_yaml(RULES_FILE)
    if extra is None:
        return _validated(shipped, RULES_FILE)
    extra = Path(extra)
    if not extra.is_file():
        raise InputError(f"{extra}: rules file not found")
    user = _read_yaml(extra)
    unknown = sorted(set(user) - set(RuleSet.model_fields))
    if unknown:
        raise InputError(f"{extra}: unknown key(s) {', '.join(unknown)}; a rules file may have "
                         f"{', '.join(RuleSet.model_fields)}")
    merged = dict(shipped)
    merged["rules"] = list(user.get("rules") or []) + list(shipped.get("rules") or [])
    merged["b_value_tags"] = list(user.get("b_value_tags") or []) + list(shipped.get("b_value_tags") or [])
    patterns = dict(shipped.get("b_value_patterns") or {})
    for key, values in (user.get("b_value_patterns") or {}).items():
        patterns[key] = list(values or []) + list(patterns.get(key) or [])
    merged["b_value_patterns"] = patterns
    for key in ("high_b_min", "version"):
        if key in user:
            merged[key] = user[key]
    if "ct" in user:
        merged["ct"] = {**(shipped.get("ct") or {}), **(user.get("ct") or {})}
    return _validated(merged, extra)


# ---- picai_prep mappings ----------------------------------------------------------------------

@dataclass(frozen=True)
class MappingEntry:
    name: str
    role: str
    #: (key as written, key name in the scan's extra tags) -> allowed values.
    criteria: tuple[tuple[str, str, tuple[str, ...]], ...]


@dataclass
class SeriesMapping:
    """A picai_prep ``dcm2mha`` mapping: ``{"mappings": {"t2w": {"SeriesDescription": ["t2_tse_tra"]}, ...}}``.

    As in picai_prep, keys are DICOM attribute names (any case) or ``gggg|eeee`` tags, a series
    matches an entry when every key has one of the listed values, and values are compared
    case-insensitively after stripping blanks (``options.values_match_func``: ``lower_strip_equals``
    by default, or ``..._contains`` / ``..._regex``). Names: t2w -> t2, hbv -> dwi, adc -> adc
    (also t2, dwi, ct); other names mark their series as other.
    """

    path: Path
    entries: list[MappingEntry]
    match: str = "lower_strip_equals"
    tags: list[tuple[str, tuple[int, int]]] = field(default_factory=list)

    @property
    def roles(self) -> set[str]:
        return {e.role for e in self.entries if e.role in IMAGE_ROLES}

    def _value_matches(self, needle: str, haystack: str) -> bool:
        if "lower" in self.match:
            needle, haystack = needle.lower(), haystack.lower()
        if "strip" in self.match:
            needle, haystack = needle.strip(), haystack.strip()
        if "equals" in self.match:
            return needle == haystack
        if "contains" in self.match:
            return needle in haystack
        return re.search(needle, haystack) is not None

    def matching(self, s: SeriesInfo) -> list[tuple[MappingEntry, str]]:
        """Each entry ``s`` matches, with the criterion text for the record."""
        found = []
        for entry in self.entries:
            shown = []
            for key, name, values in entry.criteria:
                observed = s.extra.get(name, "")
                if not any(self._value_matches(v, observed) for v in values):
                    break
                shown.append(f"{key} = {observed!r}")
            else:
                found.append((entry, "; ".join(shown)))
        return found


def _tag_of(key: str) -> tuple[int, int] | None:
    from pydicom.datadict import keyword_dict

    try:
        return _tag(key)
    except ValueError:
        pass
    lowered = {k.lower(): v for k, v in keyword_dict.items()}
    value = lowered.get(key.strip().lower().replace(" ", "").replace("_", ""))
    if value is None:
        value = lowered.get(key.strip().lower())
    return None if value is None else (value >> 16, value & 0xFFFF)


def load_mapping(path: str | Path) -> SeriesMapping:
    """Read a picai_prep dcm2mha settings JSON (its ``archive`` part, if any, is not needed here)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read the mapping ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise InputError(f"{path}: not a JSON file ({exc})") from None
    mappings = data.get("mappings") if isinstance(data, dict) else None
    if not isinstance(mappings, dict) or not mappings:
        raise InputError(f"{path}: a mapping is a JSON object with \"mappings\": {{\"t2w\": {{\"SeriesDescription\": "
                         f"[\"t2_tse_tra\"]}}, \"adc\": {{...}}, \"hbv\": {{...}}}} (picai_prep's dcm2mha format)")
    options = data.get("options") or {}
    match = str(options.get("values_match_func", "lower_strip_equals"))
    if not any(word in match for word in ("equals", "contains", "regex")):
        raise InputError(f"{path}: options.values_match_func {match!r} is not one of picai_prep's variants "
                         f"(lower_strip_equals, lower_strip_contains, lower_strip_regex, ...)")
    entries, tags, problems = [], {}, []
    for name, criteria in mappings.items():
        if not isinstance(criteria, dict) or not criteria:
            problems.append(f"mapping {name!r}: expected an object of DICOM attribute -> list of values")
            continue
        parsed = []
        for key, values in criteria.items():
            tag = _tag_of(str(key))
            if tag is None:
                problems.append(f"mapping {name!r}: {key!r} is not a DICOM attribute name or 'gggg|eeee' tag")
                continue
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                problems.append(f"mapping {name!r}: {key!r} must list strings, got {values!r}")
                continue
            if "regex" in match:
                for value in values:
                    if _regex_error(value):
                        problems.append(f"mapping {name!r}: {key!r}: {value!r} is not a regular expression")
            tag_name = f"{tag[0]:04X}|{tag[1]:04X}"
            tags[tag_name] = tag
            parsed.append((str(key), tag_name, tuple(values)))
        entries.append(MappingEntry(name=str(name), role=PICAI_ROLES.get(str(name).lower(), "other"),
                                    criteria=tuple(parsed)))
    if problems:
        raise InputError(f"{path}: " + "; ".join(problems))
    return SeriesMapping(path=path, entries=entries, match=match, tags=sorted(tags.items()))


def _regex_error(value: str) -> bool:
    try:
        re.compile(value)
    except re.error:
        return True
    return False


# ---- classification ---------------------------------------------------------------------------

@dataclass(frozen=True)
class BValues:
    """A series' b-values and where they were read: ``tag``, ``sequence_name`` or ``description``."""

    values: tuple[float, ...]
    kind: str
    source: str

    @property
    def max(self) -> float | None:
        return max(self.values) if self.values else None


def series_b_values(s: SeriesInfo, rules: RuleSet) -> BValues:
    """From the files' tags (or sequence names); failing those, from the description's patterns."""
    if s.b_values:
        kind = "sequence_name" if s.b_source == "SequenceName" else "tag"
        return BValues(s.b_values, kind, s.b_source)
    for pattern in rules.b_value_patterns.description:
        match = re.search(pattern, s.description or "", re.IGNORECASE)
        if match:
            numbers = tuple(sorted({float(n) for n in re.findall(r"\d+", match.group(1))}))
            if numbers:
                return BValues(numbers, "description", "SeriesDescription")
    return BValues((), "", "")


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:g}"


@dataclass
class Classification:
    role: str
    rule: str
    score: int
    why: str
    b: BValues


def classify(s: SeriesInfo, rules: RuleSet, mapping: SeriesMapping | None = None, *,
             mapping_only: bool = False) -> Classification:
    """The role of ``s``: a mapping's entry first, then the first matching rule; ``other`` when none matches."""
    b = series_b_values(s, rules)
    if mapping is not None:
        matched = mapping.matching(s)
        if matched:
            entry, shown = matched[0]
            why = f"mapping {entry.name!r} of {mapping.path.name}: {shown}"
            if len(matched) > 1:
                why += f" (also matches {', '.join(repr(e.name) for e, _ in matched[1:])}; the first is used)"
            return Classification(entry.role, f"mapping:{entry.name}", MAPPING_SCORE, why, b)
    facts = {"description": s.description, "orientation": s.orientation, "b_max": _number(b.max),
             "b_values": ", ".join(f"{v:g}" for v in b.values) or "none", "b_source": b.source or "none",
             "image_type": "\\".join(s.image_type) or "none", "kernel": s.kernel or "none",
             "echo_time": _number(s.echo_time), "repetition_time": _number(s.repetition_time),
             "body_part": s.body_part or "unknown", "modality": s.modality or "none"}
    for rule in rules.rules:
        if rule.matches(s, b):
            why = rule.why.format_map(facts)
            if mapping_only and mapping is not None and rule.role in mapping.roles:
                return Classification("other", rule.name, 0,
                                      f"matches no entry of {mapping.path.name}, which alone decides the "
                                      f"{rule.role} (--mapping-only); the rules would say: {why}", b)
            return Classification(rule.role, rule.name, rule.score, why, b)
    return Classification("other", "none", 0, "no rule matched", b)


# ---- choosing per patient -----------------------------------------------------------------------

@dataclass
class Candidate:
    """A series that could serve a role, the files it would use, and its score."""

    series: SeriesInfo
    classification: Classification
    files: list[Path]
    problem: str | None
    note: str = ""
    key: tuple[float, ...] = ()
    key_text: str = ""

    @property
    def usable(self) -> bool:
        return self.problem is None


@dataclass
class PatientChoice:
    """What was chosen for one patient, what is missing or ambiguous, and a decision for every series."""

    chosen: dict[str, Candidate] = field(default_factory=dict)
    mri_study: str | None = None
    ct_study: str | None = None
    missing: list[str] = field(default_factory=list)
    missing_detail: dict[str, str] = field(default_factory=dict)
    ambiguous: dict[str, list[Candidate]] = field(default_factory=dict)
    study_notes: list[str] = field(default_factory=list)
    #: series key -> (status, text)
    decisions: dict[str, tuple[str, str]] = field(default_factory=dict)
    has_mri: bool = False
    has_ct: bool = False

    @property
    def mri_complete(self) -> bool:
        return self.has_mri and all(r in self.chosen for r in MRI_ROLES)


def candidate(s: SeriesInfo, c: Classification) -> Candidate:
    """The files ``s`` would contribute as ``c.role`` and why it cannot, if it cannot.

    A high-b DWI series holding several b-values contributes only its highest-b files.
    """
    files, note = list(s.files), ""
    if s.blocking:
        return Candidate(s, c, files, "; ".join(s.blocking))
    if c.role == "dwi" and len(set(v for v in s.file_b_values if v is not None)) > 1:
        top = max(v for v in s.file_b_values if v is not None)
        if any(v is None for v in s.file_b_values):
            return Candidate(s, c, files, "several b-values in one series, and some files have none: the high-b "
                                          "files cannot be picked out")
        files = [f for f, v in zip(s.files, s.file_b_values) if v == top]
        note = f"only its b={top:g} files ({len(files)} of {len(s.files)})"
    _, volumes, problems = s.layout(files)
    if volumes > 1:
        return Candidate(s, c, files, f"{volumes} files per slice position (several b-values, echoes or time "
                                      f"points in one series) and no b-value tells them apart")
    if problems:
        return Candidate(s, c, files, "; ".join(problems))
    return Candidate(s, c, files, None, note)


def _same_grid(a: SeriesInfo, b: SeriesInfo) -> bool:
    if a.frame_of_reference and b.frame_of_reference and a.frame_of_reference != b.frame_of_reference:
        return False
    if (a.rows, a.columns) != (b.rows, b.columns) or a.pixel_spacing is None or b.pixel_spacing is None:
        return False
    if any(abs(x - y) > 1e-3 for x, y in zip(a.pixel_spacing, b.pixel_spacing)):
        return False
    if a.normal is None or b.normal is None:
        return False
    return all(abs(x - y) < 1e-3 for x, y in zip(a.normal, b.normal))


def _kernel_class(kernel: str, rules: RuleSet) -> int:
    text = kernel.strip()
    if rules.ct.preferred_kernel and re.fullmatch(rules.ct.preferred_kernel, text, re.IGNORECASE):
        return 2
    if rules.ct.avoided_kernel and re.fullmatch(rules.ct.avoided_kernel, text, re.IGNORECASE):
        return 0
    return 1


def score(c: Candidate, rules: RuleSet, dwi: Candidate | None = None) -> None:
    """Set ``c.key`` (compared as a tuple, higher is better) and its explanation ``c.key_text``."""
    s, cl = c.series, c.classification
    head = f"rule {cl.rule} (score {cl.score})"
    role = cl.role
    if role == "t2":
        pixel = min(s.pixel_spacing) if s.pixel_spacing else None
        c.key = (cl.score, -round(pixel, 2) if pixel is not None else float("-inf"))
        c.key_text = f"{head}, pixels {_number(round(pixel, 3) if pixel is not None else None)} mm"
    elif role == "dwi":
        top = cl.b.max if cl.b.max is not None else -1.0
        c.key = (cl.score, top)
        c.key_text = f"{head}, highest b {_number(cl.b.max)}"
    elif role == "adc":
        grid = int(dwi is not None and _same_grid(s, dwi.series))
        c.key = (cl.score, grid)
        c.key_text = f"{head}, " + ("on the chosen DWI's grid" if grid else "not on the chosen DWI's grid"
                                    if dwi is not None else "DWI not settled")
    elif role == "ct":
        kernel = _kernel_class(s.kernel, rules)
        low, high = rules.ct.slice_thickness_mm
        thickness = s.slice_thickness
        in_range = int(thickness is not None and low <= thickness <= high)
        spacing = _slice_spacing(s)
        coverage = round((s.n_positions - 1) * spacing / 10) * 10 if spacing else 0
        c.key = (cl.score, kernel, in_range, coverage)
        c.key_text = (f"{head}, kernel {s.kernel or 'unknown'} ({('avoided', 'unknown', 'preferred')[kernel]}), "
                      f"slices {_number(thickness)} mm ({'in' if in_range else 'outside'} {low:g}-{high:g} mm), "
                      f"coverage {coverage:g} mm")
    else:
        c.key, c.key_text = (cl.score,), head


def _slice_spacing(s: SeriesInfo) -> float:
    import numpy as np

    if s.normal is None or s.n_positions < 2:
        return float(s.slice_thickness or 0)
    positions = sorted({round(float(np.dot(h.ipp, s.normal)), 2) for h in s.headers.values() if h.ipp is not None})
    return float(np.median(np.diff(positions))) if len(positions) > 1 else float(s.slice_thickness or 0)


def _when(s: SeriesInfo) -> tuple[str, str, str]:
    return s.study_date, s.study_time, s.study_key


def choose(series: Sequence[SeriesInfo], classes: dict[str, Classification], rules: RuleSet,
           study_names: dict[str, str]) -> PatientChoice:
    """One patient's choice: its study (latest complete bpMRI; latest with CT), then the best series per role.

    ``series`` are this patient's; ``classes`` maps series key -> classification; ``study_names``
    maps study key -> the name written in outputs (``S1``, ``S2``: by date, never the date itself).
    """
    choice = PatientChoice()
    by_study: dict[str, list[SeriesInfo]] = {}
    for s in series:
        by_study.setdefault(s.study_key, []).append(s)
    order = sorted(by_study, key=lambda k: _when(by_study[k][0]))
    candidates: dict[str, dict[str, list[Candidate]]] = {k: {r: [] for r in IMAGE_ROLES} for k in order}
    for s in series:
        cl = classes[s.key]
        if cl.role in IMAGE_ROLES:
            cand = candidate(s, cl)
            candidates[s.study_key][cl.role].append(cand)
            if not cand.usable:
                choice.decisions[s.key] = ("not usable", cand.problem or "")
        else:
            choice.decisions[s.key] = ("not used", f"{cl.role}: no manifest column takes it")
    choice.has_mri = any(s.modality == "MR" for s in series)
    choice.has_ct = any(s.modality == "CT" for s in series)

    def usable(study: str, role: str) -> list[Candidate]:
        return [c for c in candidates[study][role] if c.usable]

    if choice.has_mri:
        complete = [k for k in order if all(usable(k, r) for r in MRI_ROLES)]
        if complete:
            # a study whose series a mapping names outranks the others; then the latest
            rank = {k: (sum(any(c.classification.score >= MAPPING_SCORE for c in usable(k, r)) for r in MRI_ROLES),
                        *_when(by_study[k][0])[:2]) for k in complete}
            complete.sort(key=lambda k: rank[k])
            study = complete[-1]
            if len(complete) > 1:
                names = ", ".join(study_names[k] for k in sorted(complete, key=order.index))
                if rank[complete[-2]] == rank[study]:
                    choice.ambiguous["study"] = [c for k in complete if rank[k] == rank[study] for c in usable(k, "t2")]
                    for c in choice.ambiguous["study"]:
                        score(c, rules)
                    choice.study_notes.append(f"bpMRI: {len(complete)} complete studies ({names}) with the same date "
                                              f"and time: name the series of one in a mapping")
                elif rank[study][0]:
                    choice.study_notes.append(f"bpMRI: {study_names[study]} chosen: its series are named by the "
                                              f"mapping (complete studies: {names})")
                else:
                    choice.study_notes.append(f"bpMRI: {study_names[study]} chosen, the latest of {len(complete)} "
                                              f"complete studies ({names})")
        else:
            mri_studies = [k for k in order if any(s.modality == "MR" for s in by_study[k])]
            study = max(mri_studies, key=lambda k: (sum(bool(usable(k, r)) for r in MRI_ROLES), order.index(k)))
        choice.mri_study = study
        if "study" not in choice.ambiguous:
            _pick_roles(choice, candidates[study], MRI_ROLES, rules)
        for role in MRI_ROLES:
            if not usable(study, role):
                choice.missing.append(role)
                unusable = candidates[study][role]
                choice.missing_detail[role] = (
                    "no series classified as " + role if not unusable else
                    f"{len(unusable)} candidate(s), none usable: " + "; ".join(
                        f"{c.series.description!r}: {c.problem}" for c in unusable))
    if choice.has_ct:
        with_ct = [k for k in order if usable(k, "ct")]
        if with_ct:
            choice.ct_study = with_ct[-1]
            if len(with_ct) > 1:
                choice.study_notes.append(f"CT: {study_names[with_ct[-1]]} chosen, the latest of {len(with_ct)} "
                                          f"studies with a CT ({', '.join(study_names[k] for k in with_ct)})")
            _pick_roles(choice, candidates[choice.ct_study], ("ct",), rules)
        elif any(candidates[k]["ct"] for k in order):
            choice.missing.append("ct")
            choice.missing_detail["ct"] = "; ".join(f"{c.series.description!r}: {c.problem}"
                                                    for k in order for c in candidates[k]["ct"])
    for s in series:
        if s.key in choice.decisions:
            continue
        role = classes[s.key].role
        chosen_study = choice.ct_study if role == "ct" else choice.mri_study
        if s.study_key != chosen_study:
            used = study_names.get(chosen_study, "none") if chosen_study else "none"
            choice.decisions[s.key] = ("other study", f"study {study_names[s.study_key]} not used (used: {used})")
        else:
            choice.decisions[s.key] = ("not chosen", "the study to use is not settled")
    return choice


def _pick_roles(choice: PatientChoice, pool: dict[str, list[Candidate]], roles: Sequence[str], rules: RuleSet) -> None:
    for role in roles:
        cands = [c for c in pool[role] if c.usable]
        if not cands:
            continue
        dwi = choice.chosen.get("dwi") if role == "adc" else None
        for c in cands:
            score(c, rules, dwi)
        cands.sort(key=lambda c: c.key, reverse=True)
        best = cands[0]
        tied = [c for c in cands if c.key == best.key]
        if len(tied) > 1:
            choice.ambiguous[role] = tied
            for c in cands:
                if c in tied:
                    choice.decisions[c.series.key] = (
                        "ambiguous", f"{role}: {len(tied)} candidates score equally ({c.key_text}); name one in a "
                                     f"mapping")
                else:
                    choice.decisions[c.series.key] = ("not chosen", f"{role}: {c.key_text}, below the tied best "
                                                                    f"({best.key_text})")
            continue
        choice.chosen[role] = best
        extra = f"; {best.note}" if best.note else ""
        choice.decisions[best.series.key] = (
            "chosen", f"{role}: {best.key_text}" + (f"; best of {len(cands)} candidates" if len(cands) > 1 else "")
            + extra)
        for c in cands[1:]:
            choice.decisions[c.series.key] = ("not chosen", f"{role}: {c.key_text}, below the chosen "
                                                            f"{best.series.series_uid or best.series.description!r} "
                                                            f"({best.key_text})")
