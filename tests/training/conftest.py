"""Data and loss tests run on tiny tensors: one torch thread is faster than contended thread pools.

Applies only to this part's modules (test_data_*.py, test_losses.py); other tests keep torch's
default threading.
"""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_torch_thread(request):
    name = request.module.__name__.rsplit(".", 1)[-1]
    if not (name.startswith("test_data_") or name == "test_losses"):
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
