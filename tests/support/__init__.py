"""Test support: the kernel-vs-reference case machinery (:mod:`tests.support.kernel_cases`)."""
