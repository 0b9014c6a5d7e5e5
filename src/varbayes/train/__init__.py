"""The shared training engine: Lightning Fabric loop, checkpoints, seeding, schedules."""

from varbayes.train.config import TrainConfig
from varbayes.train.distributed import make_fabric, shard_bounds, sharded_map
from varbayes.train.engine import FitResult, Learner, NonFiniteError, Step, fit
from varbayes.train.schedule import kl_warmup, lr_factor
from varbayes.train.seeding import seed_everything
from varbayes.train.threads import torch_threads

__all__ = [
    "FitResult",
    "Learner",
    "NonFiniteError",
    "Step",
    "TrainConfig",
    "fit",
    "kl_warmup",
    "lr_factor",
    "make_fabric",
    "seed_everything",
    "shard_bounds",
    "sharded_map",
    "torch_threads",
]
