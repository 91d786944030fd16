"""Training across processes and machines over MPI: the paper's two-GPU split, and data parallelism.

=======================  ====================================================================================
module                   what it holds
=======================  ====================================================================================
:mod:`.comm`             the :class:`Communicator` interface, traffic counters, the collective timeout,
                         the one-process engine
:mod:`.mpi`              the MPI engine (mpi4py; host buffers)
:mod:`.nccl`             the same communicator over NCCL for CuPy device buffers (MPI bootstraps it)
:mod:`.launch`           the checks made before any work, :func:`init`, failing fast (:func:`guard`)
:mod:`.split`            how a model is cut into columns, and what each exchange costs (from shapes alone)
:mod:`.model_parallel`   :class:`ModelParallel`: the paper's Figure 2, one column per rank
:mod:`.data_parallel`    :class:`DataParallel`: the whole model on every rank, gradients summed in buckets
:mod:`.traffic`          bytes per step of both modes, and the cluster estimates of ``docs/distributed.md``
=======================  ====================================================================================

A script (what ``minialex train --parallel model|data`` does)::

    comm = distributed.init("model")                      # checks, MPI start-up, fail-fast handlers
    minialex.seed(seed)                                   # the same seed on every rank
    model = distributed.ModelParallel(alexnet("paper"), comm)   # or: DataParallel(alexnet(...), comm)
    ...                                                   # forward / backward / optimizer.step() as usual
    comm.close()                                          # every rank reaches the end together

Run it with ``mpiexec -n 2 python script.py``. Install the extra first: ``pip install 'minialex[mpi]'``.
"""

from minialex.distributed.comm import (
    DEFAULT_TIMEOUT,
    CommStats,
    Communicator,
    DistributedError,
    LocalComm,
    Pending,
)
from minialex.distributed.data_parallel import DEFAULT_BUCKET_BYTES, DataParallel, rank_seed, shard_bounds
from minialex.distributed.launch import (
    MODEL_PARALLEL_RANKS,
    MODES,
    LaunchInfo,
    check_batch,
    check_launch,
    check_mode_size,
    check_world,
    guard,
    init,
    launch_info,
    local_comm,
    require_mpi4py,
)
from minialex.distributed.model_parallel import ModelParallel
from minialex.distributed.mpi import MPIComm
from minialex.distributed.split import LRN_MODES, SplitPlan, plan_split

__all__ = [
    "DEFAULT_BUCKET_BYTES",
    "DEFAULT_TIMEOUT",
    "LRN_MODES",
    "MODEL_PARALLEL_RANKS",
    "MODES",
    "CommStats",
    "Communicator",
    "DataParallel",
    "DistributedError",
    "LaunchInfo",
    "LocalComm",
    "MPIComm",
    "ModelParallel",
    "Pending",
    "SplitPlan",
    "check_batch",
    "check_launch",
    "check_mode_size",
    "check_world",
    "guard",
    "init",
    "launch_info",
    "local_comm",
    "plan_split",
    "rank_seed",
    "require_mpi4py",
    "shard_bounds",
]
