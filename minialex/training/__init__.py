"""Training an AlexNet: the configuration, the loop and its collaborators, checkpoints, evaluation, records, plots.

>>> from minialex.training import TrainConfig, Trainer
>>> result = Trainer(TrainConfig(epochs=1)).fit()

Where each job lives (the loop in :mod:`.loop` reads top to bottom and calls these):

=================  ===========================================================================================
:mod:`.config`     ``TrainConfig``: every option, validated; the rules the command line shares
:mod:`.data`       the run's splits after ``--limit-*`` (the one place that cuts subsets), ``DataInfo``
:mod:`.build`      model, optimiser, schedule and input pipeline from the config
:mod:`.state`      ``RunState``: the progress a checkpoint restores (epochs, steps, sums, best, history)
:mod:`.monitor`    per-step sums and divergence checks kept on the device, read back in batches
:mod:`.signals`    SIGINT/SIGTERM as stop requests between steps
:mod:`.progress`   the progress bar
:mod:`.report`     history rows, ``metrics.json``, the messages
:mod:`.rundir`     the run directory's files
:mod:`.checkpoint` the safetensors checkpoint format (the one format tag), atomic and verified
:mod:`.saved_run`  a training run's record inside a checkpoint, checked before anything is built from it
:mod:`.resume`     which options a resumed run may change; the checks that a checkpoint fits
:mod:`.evaluation` evaluation, the initial-loss check, models restored for inference
:mod:`.parallel`   ``--parallel data|model`` under ``mpiexec``: shards, gradient sums, rank 0 writes, stopping together
=================  ===========================================================================================
"""

from minialex.training.config import SCHEDULES, TrainConfig
from minialex.training.loop import RunResult, Trainer, fit
from minialex.training.progress import format_rate

__all__ = ["SCHEDULES", "RunResult", "TrainConfig", "Trainer", "fit", "format_rate"]
