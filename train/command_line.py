"""The flag parsing every command of `train/` shares.

absl already reports a bad flag or a config override of the wrong type as one line
("FATAL Flags parsing error: ..."). An override that names no field of the config
(`--config.learning_rat=0.1`, a typo) reaches ml_collections as a missing attribute, which
it raises where it meets it: when the config flag is defined (the overrides are checked
against a default config file) or when the flags are parsed (against the file given). A
command defines its config flag with `define_config_file` and runs with
`app.run(main, flags_parser=parse)`, and either way the mistake is one line too, with
ml_collections' suggestion of the field meant.
"""

from __future__ import annotations

import re
import sys
from typing import NoReturn

from absl import app
from ml_collections import config_flags

_UNKNOWN = re.compile(r"'([^'\\]+)\\?'")  # ml_collections: "'field'\nDid you mean ..."
_SUGGESTION = re.compile(r'Did you mean "([^"]+)" instead of')


def define_config_file(name: str, default: str | None, help_string: str, **kwargs):
    """`config_flags.DEFINE_config_file`, with an override of no field of the default
    config (in `sys.argv`) reported as one line of error."""
    try:
        return config_flags.DEFINE_config_file(name, default, help_string, **kwargs)
    except (AttributeError, KeyError) as error:
        _unknown_field(error, sys.argv)


def parse(argv: list[str]) -> list[str]:
    """absl's `parse_flags_with_usage`: returns the arguments left over; exits with status
    1 and one line of error for a bad flag or config override."""
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError) as error:
        _unknown_field(error, argv)


def _unknown_field(error: Exception, argv: list[str]) -> NoReturn:
    """Writes the one line of an override of a field the config does not have, in absl's
    words, and exits with status 1; re-raises any other error. ml_collections raises an
    AttributeError for a missing field, a KeyError for a missing parent of one."""
    text = str(error)
    found = _UNKNOWN.search(text)
    if found is None:
        raise error
    field = found.group(1)
    names = rf"\.{re.escape(field)}(\.|$)"  # the override that goes through `field`
    flag = next((a.split("=")[0] for a in argv if re.search(names, a.split("=")[0])), field)
    suggestion = _SUGGESTION.search(text)
    hint = f"; did you mean {suggestion.group(1)!r}?" if suggestion else "."
    sys.stderr.write(
        f"FATAL Flags parsing error: {flag}: the config has no field {field!r}{hint}\n"
        "Pass --helpshort or --helpfull to see help on flags.\n"
    )
    sys.exit(1)
