"""The one pattern of a job definition's name and of a schedule's name."""

NAME_PATTERN = r"[a-z0-9][a-z0-9_-]{0,63}"
