# ruff: noqa  (diagnostic scripts kept as they were run; not library code)
import torch

from varbayes.methods.bnn import bayescap_tasks as tasks
from varbayes.train import TrainConfig, fit

torch.set_num_threads(1)
seed = 0
data = tasks.restoration_data(0.1)
meta = {"network": {"type": "mlp", "in": 64, "hidden": [256, 256], "out": 64, "dropout": 0.1}, "output": "raw"}
torch.manual_seed(seed)
net = tasks.build_frozen(meta)
res = fit(tasks.L1Learner(net), data["x_train"], data["y_train"], TrainConfig(epochs=300, batch_size=64, lr=1e-3, val_fraction=0.0), seed=seed, x_val=data["x_val"], y_val=data["y_val"], quiet=True)
h = res.history
for e in (10, 25, 50, 75, 100, 150, 200, 250, 300):
    r = h[e - 1]; print(e, round(r["train_loss"], 4), round(r["val_loss"], 4))
print("best epoch", res.best_epoch, min(r["val_loss"] for r in h))
