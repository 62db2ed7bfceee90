"""Every implementation of every kernel matches its reference on the kernel's cases.

Parametrised from the registry by ``tests/conftest.py``: ids ``<kernel>-<impl>``;
unavailable implementations skip with their reason (or fail under
``LIVESR_REQUIRE_BACKENDS``).  Adding an implementation file adds a test here.
"""

from __future__ import annotations

import copy

from livesr.engine.testing import assert_matches


def test_matches_reference(kernel_impl):
    kernel = kernel_impl.kernel
    cases = kernel.cases()
    # a kernel without cases would have no parity test at all: that is a defect
    assert cases, f"{kernel.name} declares no cases (Kernel(..., cases=...))"
    for case in cases:
        expected = kernel_impl.reference(
            *copy.deepcopy(case.args), **copy.deepcopy(dict(case.kwargs))
        )
        actual = kernel_impl(
            *copy.deepcopy(case.args), **copy.deepcopy(dict(case.kwargs))
        )
        assert_matches(
            actual,
            expected,
            kernel.tolerance,
            f"{kernel_impl.id} on case {case.name!r}",
        )
