"""Training the step-conditioned denoiser (TensorFlow; the CLI imports it lazily).

Modules, in the order a run uses them:

- ``options``     TrainOptions (every `diffuse train` option, defined once), checks, noise levels in model units
- ``data``        files -> items -> random augmented patches -> tf.data (in memory or streamed)
- ``resources``   strategy, mixed precision, XLA, memory and ``--batch-size auto``
- ``checkpoints`` model + EMA + optimizer + step on disk: resume, ``--export-only``
- ``tf_schedule`` the schedule as TF ops (derived from ``diffuse_cli.schedule``)
- ``losses``      MSE, L1 and SSIM loss terms
- ``validation``  one-step denoising score of fixed patches after each epoch
- ``signals``     Ctrl-C / SIGTERM -> checkpoint, then errors.Interrupted
- ``loop``        TrainLoop: the compiled step, logging, checkpoints, validation
- ``run``         train(): one run from options to the saved model
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before the first TensorFlow import: no C++ info lines

from diffuse_cli.training.checkpoints import TrainingState, load_training_state  # noqa: E402
from diffuse_cli.training.options import TrainOptions  # noqa: E402
from diffuse_cli.training.run import train  # noqa: E402

__all__ = ["TrainOptions", "TrainingState", "load_training_state", "train"]
