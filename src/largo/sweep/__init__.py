"""`largo sweep`: a grid of sampling (and optionally training) settings, each cell generated and evaluated alike.

A sweep config is one JSON object::

    {"checkpoint": "runs/demo",            # run dir, checkpoint folder or released name (or "train_grid", below)
     "n": 1000, "seed": 0,                 # image i of every cell: class i % K, seed SEED + i
     "grid": {"sampler": ["ddim", "dpmpp2m"], "steps": [10, 20], "cfg": [3], "eta": [0],
              "spacing": ["trailing"], "weights": ["ema", "online"], "clip_x0": [true],
              "precision": ["auto"]},
     "out": "runs/sweeps/mine"}

`grid` is a dict (its Cartesian product) or a list of such dicts (the union of their products, duplicates
dropped), so "DDPM 1000 vs DDIM 250/50/20" is `[{"sampler": ["ddpm"], "steps": [1000]}, {"sampler": ["ddim"],
"steps": [250, 50, 20]}]`. The grid keys are `SamplingOptions` fields (the flags of `largo sample`), and `weights`.
A key left out takes the checkpoint's `sample` config. A list of checkpoints (e.g. one run's
checkpoints across training) runs the grid on each; its cells are named `step<N>__<cell>`. `eta` only changes DDIM, so the
other samplers' cells are recorded with eta 0 (and not repeated).

Training-setting sweeps replace `checkpoint` with `train_grid` (any config field → list of values),
`base_config` (a preset name, a config.json path, or {"preset"/"config": …, field: value, …}) and `train`
(train-section overrides, e.g. {"steps": 2000}); every setting is trained as its own run under OUT/runs/<cell>/
and then evaluated on the sampling grid. A setting that finished is not retrained (OUT/runs/<cell>/sweep_train.json);
one that was interrupted resumes from its latest checkpoint (a `max_minutes` budget then starts again).

Per cell: generation wall time per image (and process CPU time), peak memory during generation (CUDA:
`torch.cuda.max_memory_allocated`; CPU: the process's peak RSS, `resource.getrusage`, with the peak reset before
the cell through /proc/self/clear_refs where Linux allows it), then every metric of `largo eval` (domain
classifier: accuracy, FD/KID, precision/recall, class-matched FD/KID; pixel variance gap; Inception FID/KID/IS
only when its weights are on disk). Each cell's eval JSON is written atomically to OUT/cells/<cell>.json and a
cell whose JSON exists with the same settings key is not recomputed; OUT/results.csv and OUT/results.md hold
one row per cell with every column. Relative paths are relative to the working directory.
"""

from largo.sweep.cells import cell_status, nfe, sampling_cells
from largo.sweep.run import checkpoint_groups, plan, run_sweep
from largo.sweep.spec import GRID_KEYS, SweepSpec, load_spec, spec_from_dict, train_cells
from largo.sweep.table import BASE_COLUMNS, TRAIN_COLUMNS, read_rows, row_from_result

__all__ = ["BASE_COLUMNS", "GRID_KEYS", "TRAIN_COLUMNS", "SweepSpec", "cell_status", "checkpoint_groups", "load_spec",
           "nfe", "plan", "read_rows", "row_from_result", "run_sweep", "sampling_cells", "spec_from_dict", "train_cells"]
