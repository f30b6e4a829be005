import json
import warnings
from importlib import resources

import jsonschema
import pytest

# pydicom, the oracle, warns about every odd value it meets; the tests
# compare values, they do not need the noise.
warnings.filterwarnings("ignore", module="pydicom")


@pytest.fixture(scope="session")
def record_schema():
    """Validators of the JSON Schema shipped in the package, per level."""
    schema = json.loads(resources.files("fastindex").joinpath("record.schema.json").read_text())

    def validator(level: str):
        sub = dict(schema["$defs"][level])
        return jsonschema.Draft202012Validator(sub)

    return validator


# A test run started with SIGINT ignored (a background job of a
# non-interactive shell) would hand that to every fastindex it starts,
# which rightly keeps an inherited SIG_IGN (see fastindex._start): the
# tests that interrupt a run would see it run on. Children get the default.
import signal  # noqa: E402

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _collector_on():
    """The command turns the garbage collector off for its one run (see
    cli.command); a test that runs it in this process leaves it on for the
    next test, as any other process has it."""
    yield
    import gc

    gc.enable()
