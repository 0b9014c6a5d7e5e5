"""`varbayes reproduce turbo-vbi`: structured compression on the mnist1d and digits MLPs.

Per dataset and seed: dense mean-field VI (the `mfvi` learner, same BBB settings and total
epochs), Turbo-VBI, unstructured magnitude pruning of the dense VI network (global |mu|, to
exactly Turbo-VBI's number of weights, then the same fine-tuning) and a static random mask
with Turbo-VBI's per-layer counts trained from scratch (SSVI's static baseline). Claims, on
the means over seeds: Turbo-VBI's accuracy is within 1 point of dense VI; it keeps >= 10x
fewer weights; it removes >= 2x as many whole neurons as magnitude pruning and as the static
mask at the same number of weights; its compacted dense network predicts faster than the
original-size one; its mean block length is >= 1.5x the random-mask expectation (spec 6.5).
SSVI (the `ssvi` method) at Turbo-VBI's density, with the same KL weight, sigma0 and total
epochs, is one more row.

Selection on validation only (the full run): before the seeds run, a small grid of the
prior's main knobs (`GRID`) is trained, for each of the first `SELECT_SEEDS` seeds, on that
seed's training part and scored on its validation part (held out of the training data; the
test set is never looked at), next to dense VI trained as long on the same part. The rule
follows the claims (`_choose`), on the means over those seeds (`choose_over_seeds`): among grid
points that keep >= 10x fewer weights and whose mean validation accuracy is within 1 point of
dense VI's, the one that removes the most whole neurons; if no point is that accurate, the most
accurate point with >= 10x. The chosen setting is used for every seed. The quick run uses the
Config defaults.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path
from typing import Any

import torch

from varbayes.data import Dataset, load
from varbayes.evaluation import evaluate
from varbayes.io import atomic_write_json, load_tensors, read_json, save_tensors, to_jsonable
from varbayes.method import (
    Claim,
    ReproduceContext,
    Reproduction,
    RunContext,
    at_least,
    holds,
)
from varbayes.methods.bnn import turbo_vbi as tv
from varbayes.methods.bnn.mfvi import VariationalLearner, bayesian_model, posterior_mean_metrics
from varbayes.methods.supervised import dataset_network_spec
from varbayes.nn.bayesianize import bayesianize
from varbayes.nn.meanfield import bayesian_layers
from varbayes.nn.networks import build_network
from varbayes.train import TrainConfig, fit
from varbayes.train.denormals import flush_denormals

# Per dataset. slab_scale sets the compression level (mnist1d, seed 0, validation: 1.5 ->
# 2.7x, 2 -> 14x, 3 -> 22x); the pruning threshold hardly changes it (q(s) is nearly 0 or 1).
# neuron_ratio sets how many hidden units live (4 or 5 with per-weight pruning inside them);
# unit_keeps_weights keeps every weight between live units (ratio 6.25-7: fewer, dense units;
# docs: "Dense units"; digits' 100 fine-tuning epochs in FULL let those regrow). All points
# were compared on the same validation splits (docs) before this grid was fixed; a list is
# the union of its products.
_UNITS = {"neuron_contrast": (100.0,), "unit_keeps_weights": (False,),
          "unit_keeps_inputs": (True,)}
_DENSE = {"neuron_contrast": (100.0,), "unit_keeps_weights": (True,)}
GRID = {"mnist1d": [{"slab_scale": (2.0,), "spike_growth": (3.0, 10.0),
                     "neuron_ratio": (4.0, 5.0), **_UNITS},
                    {"slab_scale": (2.0,), "spike_growth": (3.0,), "neuron_ratio": (7.0,),
                     **_DENSE, "unit_keeps_inputs": (False,)}],
        "digits": [{"slab_scale": (2.0,), "spike_growth": (10.0,), "neuron_ratio": (5.0,),
                    **_UNITS},
                   {"slab_scale": (3.0,), "spike_growth": (10.0,), "neuron_ratio": (4.0,),
                    **_UNITS},
                   {"slab_scale": (3.0,), "spike_growth": (10.0,), "neuron_ratio": (6.25,),
                    **_DENSE, "unit_keeps_inputs": (True,)}]}
KNOBS = ("slab_scale", "spike_growth", "neuron_ratio", "neuron_contrast", "unit_keeps_weights",
         "unit_keeps_inputs")  # the axes of every dataset's grid
MIN_COMPRESSION = 10.0  # the selection's constraints (the claims' thresholds)
ACCURACY_TOLERANCE = 0.01  # validation accuracy at most this far below dense VI's
QUICK = {"digits": {"epochs": 20, "first_round": 4, "round_every": 4, "finetune_epochs": 10,
                    "eval_samples": 10, "speed_repeats": 10}}
FULL = {  # longest first (the process pool takes jobs in order); slab/growth: SELECT_IN_RUN
    "mnist1d": {"epochs": 40, "first_round": 4, "round_every": 4, "finetune_epochs": 60,
                "slab_scale": 2.0, "spike_growth": 3.0, "best_epoch": True},
    "digits": {"epochs": 40, "first_round": 5, "round_every": 5, "finetune_epochs": 100,
               "slab_scale": 3.0, "spike_growth": 10.0, "best_epoch": True},
}
# best_epoch (FULL): every contender's last training phase (Turbo-VBI's fine-tuning, dense
# VI's whole training, magnitude pruning's fine-tuning, the static mask's and SSVI's
# training) ends at its epoch with the best validation accuracy (ties: NLL), within the same
# epoch budget: the training length is chosen on validation, by one rule for all (docs:
# "Fine-tuning length").
# Run the validation grid inside the full reproduction (otherwise FULL's fixed settings).
SELECT_IN_RUN = True
SELECT_SEEDS = 3  # the grid is scored on the validation splits of this many of the seeds
WORKERS = 2  # the full run spreads its (dataset, seed) runs over this many processes
COLUMNS = ("accuracy", "nll", "ece", "weights_kept", "weights_used", "compression",
           "neurons_removed", "block_len_ratio", "compact_macs", "speed_ratio")


def reproduce(ctx: ReproduceContext) -> Reproduction:
    """(Full run: select the prior settings on validation,) run every dataset and seed, then
    one set of claims per dataset on the seed means."""
    plan = {d: dict(v) for d, v in (QUICK if ctx.quick else FULL).items()}
    seeds = ctx.seeds[:1] if ctx.quick else ctx.seeds
    selection: dict[str, Any] = {}
    if not ctx.quick and SELECT_IN_RUN:
        selection = select(plan, ctx)
        for dataset, chosen in selection.items():
            plan[dataset].update(chosen["chosen"])
    jobs = [(dataset, seed) for dataset in plan for seed in seeds]  # longest first
    results = _run_all(jobs, plan, ctx)
    claims: list[Claim] = []
    tables, figures, details = {}, {}, {}
    for dataset, settings in plan.items():
        cfg = tv.Config(**settings)
        if dataset in selection:
            used = ", ".join(map(str, selection[dataset]["seeds"]))
            tables[f"{dataset}: validation grid (seeds {used}, each on its own validation "
                   f"split of the training data)"] = _grid_table(selection[dataset])
        rows: dict[str, list[dict[str, Any]]] = {}
        for seed in seeds:
            result = results[(dataset, seed)]
            for name, metrics in result["metrics"].items():
                rows.setdefault(name, []).append(_with_used(metrics, result["masks"].get(name)))
            if seed == seeds[0]:
                figures[f"support_{dataset}"] = tv.support_figure(result["masks"], dataset)
        means = {name: _mean(r) for name, r in rows.items()}
        ceilings = [unit_ceiling(results[(dataset, s)]["masks"]["Turbo-VBI"]) for s in seeds]
        ceiling = statistics.fmean(ceilings)
        claims += _claims(dataset, means, ceiling)
        tables[f"{dataset} (test, mean over seeds {', '.join(map(str, seeds))})"] = \
            _table(means)
        tables[f"{dataset}: neurons-removed ceiling at Turbo-VBI's weight count"] = \
            _ceiling_table(means, ceiling, results[(dataset, seeds[0])]["masks"]["Turbo-VBI"])
        details[dataset] = {"settings": dataclasses.asdict(cfg), "per_seed": rows,
                            "neurons_removed_ceiling": ceilings,
                            "rounds": [results[(dataset, s)]["rounds"] for s in seeds],
                            "selection": selection.get(dataset)}
    notes = [
        "Dense VI: the mfvi learner (N(0, 1) prior, same sigma0, KL weight and total epochs as "
        "Turbo-VBI). Magnitude pruning: global |mu| of the dense VI network to Turbo-VBI's "
        "weight count, then the same fine-tuning. Static mask: random, Turbo-VBI's per-layer "
        "counts, trained from scratch for the same total epochs. SSVI: the ssvi method at "
        "Turbo-VBI's overall density (uniform per layer, its default), same KL weight, sigma0, "
        "warm-up and total epochs.",
        "Prior settings: " + ("the Config defaults (selected on validation in development)"
                              if ctx.quick else "FULL's settings (selected on seed 0's "
                              "validation split in development, never the test set)"
                              if not SELECT_IN_RUN else
                              "per dataset, chosen on the validation splits of seeds "
                              f"{', '.join(map(str, ctx.seeds[:SELECT_SEEDS]))} (each grid "
                              "point and dense VI trained on that seed's training part; never "
                              "the test set), on the means over those seeds: among grid "
                              "points with >= "
                              f"{MIN_COMPRESSION:g}x fewer weights and validation accuracy "
                              f"within {100 * ACCURACY_TOLERANCE:g} point of dense VI's, the "
                              "one removing the most whole neurons; if none is that accurate, "
                              f"the most accurate with >= {MIN_COMPRESSION:g}x") + ".",
        "speed_ratio: median prediction time (interleaved repeats, one batch of the test "
        "inputs repeated to 4096 rows) of the posterior-mean network at its original dense "
        "shapes divided by that of its compacted version; magnitude pruning and the static mask "
        "get the same treatment.",
    ]
    return Reproduction(claims, figures, tables, {"datasets": details}, notes)


def _run_all(jobs: list[tuple[str, int]], plan: dict[str, dict[str, Any]],
             ctx: ReproduceContext) -> dict[tuple[str, int], dict[str, Any]]:
    """Every (dataset, seed) comparison."""
    results = _parallel(compare, [(d, tv.Config(**plan[d]), s) for d, s in jobs], ctx,
                        "comparisons")
    return dict(zip(jobs, results))


def _parallel(fn: Any, jobs: list[tuple[str, Any, int]], ctx: ReproduceContext,
              what: str) -> list[Any]:
    """fn(dataset, cfg, seed, ctx) for every job: in this process for the quick run, spread
    over `WORKERS` processes (each with one torch thread) for the full one."""
    if ctx.quick or WORKERS < 2:
        out = []
        for dataset, cfg, seed in jobs:
            with ctx.step(f"{what}: {dataset}, seed {seed}"):
                out.append(fn(dataset, cfg, seed, ctx))
        return out
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    quiet = dataclasses.replace(ctx, quiet=True)
    with ctx.step(f"{what}: {len(jobs)} runs over {WORKERS} processes"):
        pass
    with ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("spawn"),
                             initializer=torch.set_num_threads, initargs=(1,)) as pool:
        futures = [pool.submit(fn, d, cfg, s, quiet) for d, cfg, s in jobs]
        return [f.result() for f in futures]


def select(plan: dict[str, dict[str, Any]], ctx: ReproduceContext) -> dict[str, Any]:
    """The validation grid of every dataset on the first `SELECT_SEEDS` seeds (each grid point
    and dense VI, trained as long, on that seed's own training part and scored on its
    validation part), and the point `_choose` picks on the means over those seeds."""
    seeds = ctx.seeds[:SELECT_SEEDS]
    jobs: list[tuple[str, Any, int]] = []
    keys: list[tuple[str, int, int]] = []  # (dataset, seed, grid index; -1: dense VI)
    for seed in seeds:  # seed by seed: an interrupted run has whole seeds cached
        for d in plan:
            jobs.append((d, (dense_score, tv.Config(**plan[d])), seed))
            keys.append((d, seed, -1))
            for i, cand in enumerate(_grid(d)):
                jobs.append((d, (select_score, tv.Config(**{**plan[d], **cand})), seed))
                keys.append((d, seed, i))
    scores = dict(zip(keys, _parallel(_call, jobs, ctx, "validation grid")))
    return {d: {"seeds": list(seeds), **choose_over_seeds(
                _grid(d), [scores[(d, s, -1)] for s in seeds],
                [[scores[(d, s, i)] for s in seeds] for i in range(len(_grid(d)))])}
            for d in plan}


def choose_over_seeds(grid: list[dict[str, float]], dense: list[dict[str, Any]],
                      scores: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """`_choose` on the means over seeds: `dense[j]` is dense VI's validation score on seed
    j, `scores[i][j]` grid point i's. Returns the mean rows (with each seed's validation
    accuracy alongside), dense VI's mean and per-seed accuracy and the chosen knobs."""
    dense_acc = [d["val_accuracy"] for d in dense]
    rows = []
    for cand, per_seed in zip(grid, scores):
        mean = {k: statistics.fmean(s[k] for s in per_seed) for k in per_seed[0]}
        rows.append({**cand, **mean,
                     "val_accuracy_per_seed": [s["val_accuracy"] for s in per_seed]})
    chosen = _choose(rows, statistics.fmean(dense_acc))
    return {"dense_val_accuracy": statistics.fmean(dense_acc), "dense_per_seed": dense_acc,
            "grid": rows, "chosen": {k: chosen[k] for k in KNOBS}}


def _call(dataset: str, job: tuple[Any, tv.Config], seed: int, ctx: ReproduceContext) -> Any:
    fn, cfg = job
    return fn(dataset, cfg, seed, ctx)


def _grid(dataset: str) -> list[dict[str, float]]:
    import itertools

    parts = GRID[dataset]  # one product of axes, or a list of them (the grid: their union)
    return [dict(zip(KNOBS, values)) for axes in (parts if isinstance(parts, list) else [parts])
            for values in itertools.product(*(axes[k] for k in KNOBS))]


def _choose(rows: list[dict[str, Any]], dense_accuracy: float) -> dict[str, Any]:
    """The claims' rule on validation: among rows with >= MIN_COMPRESSION fewer weights and
    accuracy within ACCURACY_TOLERANCE of dense VI's, the one removing the most whole neurons
    (ties: more accurate, then more compressed); if none is that accurate, the most accurate
    row with >= MIN_COMPRESSION (ties, common on a small validation set: the lower validation
    NLL); if none compresses that much, the most compressed."""
    def accuracy(r: dict[str, Any]) -> float:
        # means over seeds of equal accuracies can differ in the last bit (0.5875 + 0.6025 +
        # 0.63 vs 0.61 + 0.5825 + 0.6275): round, so such a tie goes to the tie-breaks
        return round(r["val_accuracy"], 9)

    sparse = [r for r in rows if r["compression"] >= MIN_COMPRESSION]
    good = [r for r in sparse
            if r["val_accuracy"] >= dense_accuracy - ACCURACY_TOLERANCE - 1e-9]
    if good:
        return max(good, key=lambda r: (r["neurons_removed"], accuracy(r), r["compression"]))
    if sparse:
        return max(sparse, key=lambda r: (accuracy(r), -r["val_nll"]))
    return max(rows, key=lambda r: r["compression"])


@flush_denormals()
def select_score(dataset: str, cfg: tv.Config, seed: int,
                 ctx: ReproduceContext) -> dict[str, Any]:
    """Turbo-VBI trained on the training part of `dataset` and scored on the validation part
    (never the test set): MC accuracy and NLL, compression and neurons removed. Saved in its
    grid folder and reused by a later run with the same settings."""
    from varbayes.metrics import structure_report

    point = "-".join(f"{k}{getattr(cfg, k):g}" for k in KNOBS)  # one folder per grid point
    folder = ctx.out / "selection" / f"{dataset}-seed{seed}-{point}"  # and seed: no sharing
    saved = _load_score(folder, cfg)
    if saved is not None:
        return saved
    ds = load(dataset)
    run_ctx = RunContext("turbo-vbi", dataset, seed, out=folder, quiet=ctx.quiet)
    torch.manual_seed(seed)
    learner, _ = tv.build(cfg, ds)
    tv.train(learner, ds, cfg, run_ctx)
    report = structure_report(tv.linear_weights(learner.network)[0])
    score = {**_validation_scores(learner.network, ds, cfg, seed),
             "compression": report["total"] / max(report["active"], 1),
             "neurons_removed": report["neurons_removed"]}
    _save_score(folder, cfg, score)
    return score


@flush_denormals()
def dense_score(dataset: str, cfg: tv.Config, seed: int,
                ctx: ReproduceContext) -> dict[str, Any]:
    """Dense VI trained for Turbo-VBI's total epochs on the training part, scored on the
    validation part: the accuracy the selection's tolerance is measured from."""
    folder = ctx.out / "selection" / f"{dataset}-seed{seed}-dense"
    saved = _load_score(folder, cfg)
    if saved is not None:
        return saved
    ds = load(dataset)
    torch.manual_seed(seed)
    dense = _variational(ds, cfg)
    _fit(dense, ds, cfg, cfg.epochs + cfg.finetune_epochs, seed, ctx)
    score = _validation_scores(dense.network, ds, cfg, seed)
    _save_score(folder, cfg, score)
    return score


def _validation_scores(network: torch.nn.Module, ds: Dataset, cfg: tv.Config,
                       seed: int) -> dict[str, float]:
    from varbayes.metrics import classification_metrics

    _, val = ds.validation_split(cfg.val_fraction, seed=seed)
    model = bayesian_model(network, {"task": ds.task, "input_shape": list(ds.input_shape)},
                           tv._mfvi_like(cfg))
    with torch.no_grad():
        probs = torch.as_tensor(model.predict(val.x_test))
    scores = classification_metrics(probs, val.y_test)
    return {"val_accuracy": scores["accuracy"], "val_nll": scores["nll"]}


def _save_score(folder: Path, cfg: tv.Config, score: dict[str, Any]) -> None:
    atomic_write_json(folder / "score.json", {"settings": cfg.to_dict(), "score": score})


def _load_score(folder: Path, cfg: tv.Config) -> dict[str, Any] | None:
    if not (folder / "score.json").is_file():
        return None
    record = read_json(folder / "score.json")
    if record.get("settings") != json.loads(json.dumps(to_jsonable(cfg.to_dict()))):
        return None
    return record["score"]


def _grid_table(selection: dict[str, Any]) -> str:
    seeds = ", ".join(map(str, selection["seeds"]))
    dense = ", ".join(f"{a:.4f}" for a in selection["dense_per_seed"])
    lines = [f"dense VI, validation accuracy {selection['dense_val_accuracy']:.4f} (mean over "
             f"seeds {seeds}: {dense})", "",
             "| " + " | ".join(KNOBS) + " | val. accuracy (mean) | per seed | val. NLL | "
             "compression | neurons removed | chosen |", "|" + "---|" * (len(KNOBS) + 6)]
    for r in selection["grid"]:
        chosen = all(r[k] == selection["chosen"][k] for k in KNOBS)
        per_seed = ", ".join(f"{a:.4f}" for a in r["val_accuracy_per_seed"])
        lines.append("| " + " | ".join(f"{r[k]:g}" for k in KNOBS)
                     + f" | {r['val_accuracy']:.4f} | {per_seed} | {r['val_nll']:.3f} | "
                     f"{r['compression']:.1f} | {r['neurons_removed']:.1f} | "
                     f"{'**yes**' if chosen else ''} |")
    return "\n".join(lines)


def compare(dataset: str, cfg: tv.Config, seed: int, ctx: ReproduceContext) -> dict[str, Any]:
    """Dense VI, Turbo-VBI, magnitude pruning and the static mask on one dataset and seed.

    The outcome is saved in the run folder (comparison.json + masks.safetensors); a later
    reproduction into the same folder with the same settings reuses it instead of training
    again, so an interrupted full run resumes where it stopped."""
    folder = ctx.out / f"{dataset}-seed{seed}"
    saved = _load_comparison(folder, cfg)
    if saved is not None:
        return saved
    result = _compare(dataset, cfg, seed, ctx)
    _save_comparison(folder, cfg, result)
    return result


def _save_comparison(folder: Path, cfg: tv.Config, result: dict[str, Any]) -> None:
    tensors = {f"{name}/{i}": m.to(torch.uint8) for name, masks in result["masks"].items()
               for i, m in enumerate(masks)}
    save_tensors(folder / "masks.safetensors", tensors)
    atomic_write_json(folder / "comparison.json",
                      {"settings": cfg.to_dict(), "metrics": result["metrics"],
                       "rounds": result["rounds"]})


def _load_comparison(folder: Path, cfg: tv.Config) -> dict[str, Any] | None:
    if not (folder / "comparison.json").is_file() or not (folder / "masks.safetensors").is_file():
        return None
    record = read_json(folder / "comparison.json")
    if record.get("settings") != json.loads(json.dumps(to_jsonable(cfg.to_dict()))):
        return None
    masks: dict[str, list[torch.Tensor]] = {}
    tensors = load_tensors(folder / "masks.safetensors")
    for key in sorted(tensors, key=lambda k: (k.rsplit("/", 1)[0], int(k.rsplit("/", 1)[1]))):
        masks.setdefault(key.rsplit("/", 1)[0], []).append(tensors[key].bool())
    metrics = {name: {k: (float(v) if v in ("nan", "inf", "-inf") else v) for k, v in m.items()}
               for name, m in record["metrics"].items()}
    return {"metrics": metrics, "masks": masks, "rounds": record["rounds"]}


@flush_denormals()  # pruned-towards-zero weights: denormals slow CPUs a lot
def _compare(dataset: str, cfg: tv.Config, seed: int, ctx: ReproduceContext) -> dict[str, Any]:
    ds = load(dataset)
    total = cfg.epochs + cfg.finetune_epochs
    run_ctx = RunContext("turbo-vbi", dataset, seed, out=ctx.out / f"{dataset}-seed{seed}",
                         quiet=ctx.quiet)
    metrics, masks = {}, {}

    torch.manual_seed(seed)
    learner, _ = tv.build(cfg, ds)
    trained = tv.train(learner, ds, cfg, run_ctx)
    metrics["Turbo-VBI"] = _evaluate(learner.network, ds, cfg, trained["fabric"])
    turbo_masks = learner.masks()
    masks["Turbo-VBI"] = turbo_masks
    kept = sum(int(m.sum()) for m in turbo_masks)

    torch.manual_seed(seed)
    dense = _variational(ds, cfg)
    _fit(dense, ds, cfg, total, seed, ctx)
    metrics["dense VI"] = _evaluate(dense.network, ds, cfg, None)

    magnitude = magnitude_masks(dense.network, kept)
    for layer, mask in zip(bayesian_layers(dense.network), magnitude):
        layer.set_mask(mask)
    if cfg.finetune_epochs:
        _fit(dense, ds, cfg, cfg.finetune_epochs, seed, ctx)
    metrics["magnitude pruning"] = _evaluate(dense.network, ds, cfg, None)
    masks["magnitude pruning"] = magnitude

    torch.manual_seed(seed)
    static = _variational(ds, cfg)
    gen = torch.Generator().manual_seed(seed)
    for layer, mask in zip(bayesian_layers(static.network), turbo_masks):
        layer.set_mask(random_mask(mask.shape, int(mask.sum()), gen))
    _fit(static, ds, cfg, total, seed, ctx)
    metrics["static random mask"] = _evaluate(static.network, ds, cfg, None)

    density = max(kept, 1) / sum(m.numel() for m in turbo_masks)  # SSVI needs > 0
    sparse = _ssvi(ds, cfg, density, total, seed, ctx)
    metrics["SSVI"] = _evaluate(sparse, ds, cfg, None)
    masks["SSVI"] = [layer.weight_mask().cpu() for layer in bayesian_layers(sparse)]
    return {"metrics": metrics, "masks": masks, "rounds": learner.rounds}


def _ssvi(ds: Dataset, cfg: tv.Config, density: float, epochs: int, seed: int,
          ctx: ReproduceContext) -> torch.nn.Module:
    """SSVI at `density` (uniform per layer) with Turbo-VBI's beta, sigma0, warm-up, optimiser
    and total epochs; its other settings are the ssvi defaults."""
    from varbayes.methods.bnn import ssvi

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    shared = {k: v for k, v in cfg.to_dict().items() if k in names}
    scfg = ssvi.Config(**{**shared, "epochs": epochs, "density": density,
                          "kl_weight": cfg.kl_weight, "kl_warmup": cfg.kl_warmup,
                          "init_sigma": cfg.init_sigma, "rho_lr_scale": cfg.rho_lr_scale,
                          "val_samples": cfg.val_samples,
                          "early_stopping": epochs if cfg.best_epoch else 0})
    torch.manual_seed(seed)
    network = ssvi.build(build_network(dataset_network_spec(ds, "mlp")), scfg, seed)
    learner = ssvi.make_learner(network, ds.task, scfg, seed)
    if cfg.best_epoch:  # the same rule as Turbo-VBI's fine-tuning
        tv.select_by_accuracy(learner)
    fit_part, val = ds.validation_split(cfg.val_fraction, seed=seed)
    fit(learner, fit_part.x_train, fit_part.y_train, scfg, seed=seed, x_val=val.x_test,
        y_val=val.y_test, quiet=ctx.quiet)
    return learner.network


def magnitude_masks(network: torch.nn.Module, keep: int) -> list[torch.Tensor]:
    """Global unstructured magnitude pruning: the `keep` largest |mu| over all layers."""
    layers = bayesian_layers(network)
    scores = torch.cat([layer.weight_mean().detach().abs().flatten() for layer in layers])
    order = torch.argsort(scores, descending=True, stable=True)
    flat = torch.zeros(len(scores), dtype=torch.bool)
    flat[order[:keep]] = True
    out, start = [], 0
    for layer in layers:
        n = layer.weight_mu.numel()
        out.append(flat[start:start + n].reshape(layer.weight_mu.shape))
        start += n
    return out


def random_mask(shape: torch.Size, keep: int, gen: torch.Generator) -> torch.Tensor:
    """`keep` entries chosen uniformly at random."""
    flat = torch.zeros(torch.Size(shape).numel(), dtype=torch.bool)
    flat[torch.randperm(len(flat), generator=gen)[:keep]] = True
    return flat.reshape(shape)


def _variational(ds: Dataset, cfg: tv.Config) -> VariationalLearner:
    network = bayesianize(build_network(dataset_network_spec(ds, "mlp")),
                          init_sigma=cfg.init_sigma)
    return VariationalLearner(network, ds.task, cfg.kl_weight, cfg.kl_warmup,
                              cfg.rho_lr_scale, cfg.val_samples)


def _fit(learner: VariationalLearner, ds: Dataset, cfg: tv.Config, epochs: int, seed: int,
         ctx: ReproduceContext) -> None:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    train_cfg = TrainConfig(**{**{k: v for k, v in cfg.to_dict().items() if k in names},
                               "epochs": epochs,
                               "early_stopping": epochs if cfg.best_epoch else 0})
    if cfg.best_epoch:  # the same rule as Turbo-VBI's fine-tuning: the best validation epoch
        tv.select_by_accuracy(learner)
    fit_part, val = ds.validation_split(cfg.val_fraction, seed=seed)
    fit(learner, fit_part.x_train, fit_part.y_train, train_cfg, seed=seed, x_val=val.x_test,
        y_val=val.y_test, quiet=ctx.quiet)


def _evaluate(network: torch.nn.Module, ds: Dataset, cfg: tv.Config,
              fabric: Any) -> dict[str, Any]:
    meta = {"task": ds.task, "input_shape": list(ds.input_shape)}
    model = bayesian_model(network, meta, tv._mfvi_like(cfg))
    out, _ = evaluate(model, ds, fabric)
    out.update(posterior_mean_metrics(None, model, ds, fabric))
    structure = tv.structure_metrics(network, ds, cfg.speed_repeats)
    out.update(structure["metrics"])
    out["compact_widths"] = structure["widths"]
    return out


def unit_ceiling(masks: list[torch.Tensor]) -> int:
    """The most hidden units any network can remove from this MLP while using as many weights
    as `masks` uses (kept weights not touching a removed unit; `max_neurons_removed`): what
    Turbo-VBI's "neurons removed" claims can reach at all at its weight count."""
    from varbayes.metrics import max_neurons_removed, structure_report

    widths = [masks[0].shape[1]] + [m.shape[0] for m in masks]
    return max_neurons_removed(widths, structure_report(masks)["used"])


def _with_used(metrics: dict[str, Any], masks: list[torch.Tensor] | None) -> dict[str, Any]:
    """`metrics` plus weights_used (kept weights not touching a removed unit), where the
    method's masks are known."""
    from varbayes.metrics import structure_report

    return {**metrics, "weights_used": structure_report(masks)["used"] if masks else None}


def _claims(dataset: str, m: dict[str, dict[str, Any]], ceiling: float) -> list[Claim]:
    turbo, dense = m["Turbo-VBI"], m["dense VI"]
    ours = turbo["neurons_removed"]

    def more_units(label: str, baseline: float) -> Claim:
        """ours >= 2x baseline; the claim says so when 2x baseline is above the ceiling."""
        text = f"{dataset}: neurons removed >= 2x {label}"
        if 2 * baseline > ceiling:
            text += (f" (2x = {2 * baseline:.4g} > {ceiling:.4g}, the most any network using "
                     f"{turbo['weights_used']:.0f} weights can remove: unreachable)")
        return holds(text, ours > 0 and ours >= 2 * baseline, ours,
                     f">= 2 x baseline, > 0 (ceiling {ceiling:.4g})", baseline=baseline)

    extra = [more_units("SSVI's (same density)", m["SSVI"]["neurons_removed"])] \
        if "SSVI" in m else []
    return [
        at_least(f"{dataset}: accuracy - dense VI's (points)",
                 100 * (turbo["accuracy"] - dense["accuracy"]), -1.0,
                 baseline=100 * dense["accuracy"]),
        at_least(f"{dataset}: fewer weights (total / kept)", turbo["compression"], 10.0),
        more_units("magnitude pruning's", m["magnitude pruning"]["neurons_removed"]),
        more_units("the static mask's", m["static random mask"]["neurons_removed"]),
        at_least(f"{dataset}: prediction speed-up of the compacted network",
                 turbo["speed_ratio"], 1.0),
        at_least(f"{dataset}: mean block length / random-mask expectation (spec 6.5)",
                 _number(turbo["block_len_ratio"]), 1.5,
                 baseline=_number(m["magnitude pruning"]["block_len_ratio"])),
        *extra,
    ]


def _number(v: Any) -> float:
    return float("nan") if v is None else float(v)


def _mean(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Means of the numbers over seeds (a number missing in a seed, e.g. the block length
    of an empty layer, is left out; none left: None); other fields from the first seed."""
    out: dict[str, Any] = {}
    for k, v in records[0].items():
        numbers = [r[k] for r in records
                   if isinstance(r[k], (int, float)) and not isinstance(r[k], bool)]
        if v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)):
            out[k] = statistics.fmean(numbers) if numbers else None
        else:
            out[k] = v
    return out


def _table(means: dict[str, dict[str, Any]]) -> str:
    head = "| method | " + " | ".join(COLUMNS) + " | compact widths |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for name, row in means.items():
        cells = [_fmt(row.get(c)) for c in COLUMNS]
        widths = "-".join(map(str, row.get("compact_widths", [])))
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {widths} |")
    return "\n".join(lines)


def _ceiling_table(means: dict[str, dict[str, Any]], ceiling: float,
                   masks: list[torch.Tensor]) -> str:
    """Each baseline's neurons removed, twice that, and whether twice that is within the
    ceiling (the most any method can remove at Turbo-VBI's weight count)."""
    turbo = means["Turbo-VBI"]
    hidden = sum(m.shape[0] for m in masks[:-1])
    lines = [f"Turbo-VBI keeps {turbo['weights_kept']:.0f} weights ({turbo['weights_used']:.0f} "
             f"used by its compacted network) and removes {turbo['neurons_removed']:.4g} of "
             f"{hidden} hidden units; no network using that many weights can remove more than "
             f"{ceiling:.4g} (mean over seeds of `max_neurons_removed`).", "",
             "| baseline | neurons removed | 2x | 2x within the ceiling |", "|---|---|---|---|"]
    for name in ("magnitude pruning", "static random mask", "SSVI"):
        if name in means:
            n = means[name]["neurons_removed"]
            lines.append(f"| {name} | {n:.4g} | {2 * n:.4g} | "
                         f"{'yes' if 2 * n <= ceiling else '**no**'} |")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "n/a"
    return f"{v:.4g}" if isinstance(v, float) else str(v)
