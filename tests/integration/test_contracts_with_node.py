"""The published contract checked from outside Python: both AsyncAPI documents parse with the
official AsyncAPI parser without an error, and an independent HPKE implementation (@hpke/core)
reproduces and opens the sealing test vectors (docs/SEALING.md)."""

from __future__ import annotations

import pytest

from contracts.generate import ASYNCAPI_FILE, ASYNCAPI_INTERNAL_FILE, SCHEMA_DIR
from contracts.sealing_vectors import VECTORS_FILE
from tests.node_packages import json_lines, run_node

pytestmark = pytest.mark.integration


def test_both_asyncapi_documents_parse_with_the_official_parser_without_errors() -> None:
    files = [str(SCHEMA_DIR / name) for name in (ASYNCAPI_FILE, ASYNCAPI_INTERNAL_FILE)]
    done = run_node("validate-asyncapi.mjs", *files)
    reports = json_lines(done.stdout)
    assert done.returncode == 0, (reports, done.stderr)
    assert [r["parsed"] for r in reports] == [True, True]
    assert [r["errors"] for r in reports] == [[], []]
    agency, internal = reports
    assert agency["channels"] > 30 and agency["operations"] > 30
    assert internal["channels"] > agency["channels"]


def test_another_hpke_implementation_reproduces_and_opens_the_sealing_vectors() -> None:
    done = run_node("sealing-vectors.mjs", str(VECTORS_FILE))
    assert done.returncode == 0, (done.stdout, done.stderr)
    [results] = json_lines(done.stdout)
    assert len(results) == 2
    assert all(r["kid"] and r["reproduced"] and r["opened"] for r in results), results
