"""ued: Unsupervised Environment Design in PyTorch."""

import os

__version__ = "0.1.0"

# torch's CPU tensors of 2 MB and more in transparent huge pages (where the kernel offers them): a training
# step allocates and frees tensors of tens of MB many times, and faulting them in 4 kB pages costs ~9% of
# the maze DR loop (benchmarks/README.md). torch reads the variable at its first large allocation, so it is
# set when ued is imported; a value the user set is kept (THP_MEM_ALLOC_ENABLE=0 turns it off).
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
