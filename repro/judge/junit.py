"""The JUnit XML report of a verify: one testsuite, one testcase per check."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from repro.judge.verdict import Check

# XML 1.0 cannot carry these characters at all, not even as character references.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(value: object) -> str:
    return _XML_ILLEGAL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                            else f"\\u{ord(m.group()):04x}", str(value))


def junit_xml(*, run_id: str, verdict: str, checks: Sequence[Check],
              duration_s: float | None) -> str:
    """A JUnit XML report: one testsuite, one testcase per check.

    `different`/`missing` checks fail (`<failure>` with the detail); `within-tolerance` ones
    pass and say so in `<system-out>`. When the verdict is `not-reproduced` but no check failed
    (no checks at all), a failing `repro.verdict` testcase keeps the report and exit code in
    agreement.
    """
    failures = [c for c in checks if not c.passed]
    extra = verdict == "not-reproduced" and not failures
    suites = ET.Element("testsuites")
    suite = ET.SubElement(suites, "testsuite", _attrs(
        name=f"repro verify {run_id}", tests=len(checks) + extra,
        failures=len(failures) + extra, errors=0, skipped=0,
        time=None if duration_s is None else f"{duration_s:.3f}"))
    props = ET.SubElement(suite, "properties")
    for key, value in (("run", run_id), ("verdict", verdict)):
        ET.SubElement(props, "property", _attrs(name=key, value=value))
    for c in checks:
        case = ET.SubElement(suite, "testcase", _attrs(classname=f"repro.{c.kind}", name=c.name))
        if not c.passed:
            failure = ET.SubElement(case, "failure", _attrs(message=c.detail, type=c.status))
            failure.text = _xml_text(f"{c.status}: {c.detail}")
        elif c.status == "within-tolerance":
            ET.SubElement(case, "system-out").text = _xml_text(f"within tolerance: {c.detail}")
    if extra:
        case = ET.SubElement(suite, "testcase", _attrs(classname="repro.verdict", name="verdict"))
        ET.SubElement(case, "failure", _attrs(message="nothing was compared",
                                              type="not-reproduced")).text = \
            "not-reproduced: no outputs, metrics or exit code were compared"
    body = ET.tostring(suites, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def error_xml(*, message: str, hint: str | None, exit_code: int) -> str:
    """The JUnit XML of a verify that could not judge (exit 2): one testcase in error, so a
    CI report shows the trouble (a baseline whose commit is not in the clone, a multi-node
    run without --single-node) instead of finding no report file at all."""
    suites = ET.Element("testsuites")
    suite = ET.SubElement(suites, "testsuite", _attrs(name="repro verify", tests=1, failures=0,
                                                      errors=1, skipped=0))
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", _attrs(name="exit_code", value=exit_code))
    case = ET.SubElement(suite, "testcase", _attrs(classname="repro.verify", name="verify"))
    text = f"error: {message}" + (f"\nhint: {hint}" if hint else "")
    ET.SubElement(case, "error", _attrs(message=message, type="trouble")).text = _xml_text(text)
    body = ET.tostring(suites, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def _attrs(**values: object) -> dict[str, str]:
    return {k: _xml_text(v) for k, v in values.items() if v is not None}
