"""Settings of the ``tare-dosimetry`` process made before NumPy loads (imported first by the package).

NumPy's OpenBLAS keeps its idle threads spinning for about 2^28 cycles (~0.1 s) after every
matrix product, waiting for the next.  A case's products are small (the overlap fractions of the
segments), and its own threads (images read ahead, the boxes' first pass, dose.nrrd compressed)
need the cores meanwhile: the spinning took a core from them (30 % of the CPU time of the shared
MAA case, 8 % of its wall time).  Unless the user set it, OpenBLAS's threads are
told to sleep as soon as they are idle (``OPENBLAS_THREAD_TIMEOUT``, read by OpenBLAS when it
loads); products still use every core.  Batch worker processes inherit the setting.
"""

import os

#: OpenBLAS's spin time of idle threads, 2**n cycles (its smallest n; its default is 28).
OPENBLAS_THREAD_TIMEOUT = "4"

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT)
