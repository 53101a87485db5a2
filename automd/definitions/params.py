"""Typed job parameters: how each kind is declared, validated and rendered into argv text."""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

# Characters no parameter value may carry unless a string parameter allows control characters:
# NUL cannot be in an argv element at all, and other control characters (newlines, escapes)
# let a value forge log lines or confuse the job's own parsing.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


ParamValue = str | int | bool


class ParamError(ValueError):
    """A caller's value for one parameter is unacceptable; `reason` is shown to the caller."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class _ParamBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str = ""
    required: bool = Field(
        True,
        description="A required parameter without a default must be given; an optional one "
        "may be left unset, and only conditional argv entries refer to it then.",
    )
    secret: bool = Field(False, description="Never logged, shown redacted in job records.")

    def validate_value(self, value: Any) -> ParamValue:
        raise NotImplementedError

    @model_validator(mode="after")
    def _default_is_valid(self) -> Self:
        default = getattr(self, "default", None)
        if default is not None:
            try:
                self.validate_value(default)
            except ParamError as exc:
                raise ValueError(f"default {default!r} is not valid: {exc.reason}") from None
        return self

    def _check_text(self, value: str, *, allow_leading_dash: bool) -> str:
        if "\x00" in value:
            raise ParamError("must not contain NUL bytes")
        if value.startswith("-") and not allow_leading_dash:
            raise ParamError("must not start with '-' (it could be taken for an option)")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ParamError("must be valid Unicode text") from None
        return value


class StringParam(_ParamBase):
    type: Literal["string"]
    # Strict: a definition file's "yes" or 5 must not be silently coerced (lax pydantic would).
    default: StrictStr | None = None
    pattern: str | None = Field(None, description="Regular expression the whole value must match.")
    enum: tuple[str, ...] | None = Field(None, description="The only values accepted.")
    min_length: int = Field(0, ge=0)
    max_length: int = Field(256, ge=1, le=65536)
    allow_leading_dash: bool = False
    allow_control_characters: bool = Field(
        False, description="Accept newlines, tabs and other control characters (never NUL)."
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return pattern

    def validate_value(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ParamError("must be a string")
        self._check_text(value, allow_leading_dash=self.allow_leading_dash)
        if not self.allow_control_characters and _CONTROL.search(value):
            raise ParamError("must not contain control characters such as newlines")
        if not self.min_length <= len(value) <= self.max_length:
            raise ParamError(
                f"must be {self.min_length} to {self.max_length} characters long, not {len(value)}"
            )
        if self.enum is not None and value not in self.enum:
            raise ParamError(f"must be one of {', '.join(map(repr, self.enum))}")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise ParamError(f"must match the pattern {self.pattern!r}")
        return value

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string", "maxLength": self.max_length}
        if self.min_length:
            schema["minLength"] = self.min_length
        if self.pattern is not None:
            schema["pattern"] = f"^(?:{self.pattern})$"
        if self.enum is not None:
            schema["enum"] = list(self.enum)
        return schema


class IntegerParam(_ParamBase):
    type: Literal["integer"]
    default: StrictInt | None = None
    minimum: StrictInt = Field(0, description="Smallest value; negative values need minimum < 0.")
    maximum: StrictInt = 2**53

    @model_validator(mode="after")
    def _consistent(self) -> IntegerParam:
        if self.minimum > self.maximum:
            raise ValueError("minimum is greater than maximum")
        return self

    def validate_value(self, value: Any) -> int:
        # JSON true/false are not integers, though Python's bool is an int subclass.
        if not isinstance(value, int) or isinstance(value, bool):
            raise ParamError("must be an integer")
        if not self.minimum <= value <= self.maximum:
            raise ParamError(f"must be between {self.minimum} and {self.maximum}")
        return value

    def json_schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}


class BooleanParam(_ParamBase):
    type: Literal["boolean"]
    default: StrictBool | None = None

    def validate_value(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ParamError("must be true or false")
        return value

    def json_schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


class PathParam(_ParamBase):
    type: Literal["path"]
    default: StrictStr | None = None
    allowed_prefixes: tuple[str, ...] = Field(
        min_length=1, description="Absolute directories the normalised path must lie under."
    )
    max_length: int = Field(4096, ge=1, le=4096)

    @field_validator("allowed_prefixes")
    @classmethod
    def _absolute(cls, prefixes: tuple[str, ...]) -> tuple[str, ...]:
        for prefix in prefixes:
            if not prefix.startswith("/") or posixpath.normpath(prefix) != prefix:
                raise ValueError(f"{prefix!r} must be an absolute, normalised directory")
        return prefixes

    def validate_value(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ParamError("must be a string holding an absolute path")
        self._check_text(value, allow_leading_dash=False)
        if _CONTROL.search(value):
            raise ParamError("must not contain control characters such as newlines")
        if len(value) > self.max_length:
            raise ParamError(f"must be at most {self.max_length} characters long")
        if not value.startswith("/"):
            raise ParamError("must be an absolute path")
        # Normalise lexically ("a/../b" -> "b"); POSIX lets normpath keep a leading "//", so
        # fold it by hand. The prefix check runs on the normalised form: ".." cannot escape.
        normalised = "/" + posixpath.normpath(value).lstrip("/")
        for prefix in self.allowed_prefixes:
            if prefix in ("/", normalised) or normalised.startswith(prefix + "/"):
                return normalised
        raise ParamError(f"must lie under {' or '.join(self.allowed_prefixes)}")

    def json_schema(self) -> dict[str, Any]:
        # x-allowed-prefixes: an annotation (JSON Schema ignores unknown keywords) so that
        # forms and automctl can say where a path may point; the check is validate_value's.
        return {
            "type": "string",
            "maxLength": self.max_length,
            "pattern": "^/",
            "x-allowed-prefixes": list(self.allowed_prefixes),
        }


ParamSpec = Annotated[
    StringParam | IntegerParam | BooleanParam | PathParam, Field(discriminator="type")
]
