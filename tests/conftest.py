"""Every test runs on one torch thread: tiny ops on a shared 2-core machine run faster and steadier that way
(two threads under load were measured 10x slower), and results do not depend on the machine's core count."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
