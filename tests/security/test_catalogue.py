"""Every case of the attack catalogue has its regression tests here, and the operators' page says so.

The catalogue (attacks and faults that real federated servers suffered, and the outside review's
findings from case 48 on) is listed in
``docs/security.md`` § "The catalogue, case by case"; each case is tested in this package by
functions named ``test_sec_NN_<what is refused>``. This test fails when a case loses its last
test, or when the page and the tests disagree about where a case is tested.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parents[1] / "docs" / "security.md"
CASES = list(range(1, 90))
"""The catalogue's cases: 1-47, then the outside review of issue 12 (48-61), then the cases found
while building later features (62 and up, numbered as they were assigned)."""
TEST_NAME = re.compile(r"^test_sec_(\d{2})(?:_(\d{2}))?[a-z]?_")
ROW = re.compile(r"^\|\s*(\d{1,2})\s*\|[^|]*\|\s*([^|]*)\|", re.MULTILINE)


def _tests_by_case() -> dict[int, set[str]]:
    """Case number → the security modules holding a test for it."""
    found: dict[int, set[str]] = defaultdict(set)
    for module in sorted(HERE.glob("test_*.py")):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                match = TEST_NAME.match(node.name)
                if match:
                    for number in filter(None, match.groups()):
                        found[int(number)].add(module.name)
    return found


def test_every_catalogue_case_has_a_regression_test() -> None:
    tests = _tests_by_case()
    assert sorted(set(CASES) - set(tests)) == []
    assert sorted(set(tests) - set(CASES)) == []


def test_the_operators_page_names_the_modules_that_test_each_case() -> None:
    tests = _tests_by_case()
    rows = {int(number): cell for number, cell in ROW.findall(DOC.read_text(encoding="utf-8"))}
    assert sorted(rows) == list(CASES), "docs/security.md lists every case once"
    for case, cell in rows.items():
        named = set(re.findall(r"(?<![/\w])test_\w+\.py", cell))
        assert named and named <= tests[case], (case, named, tests[case])
