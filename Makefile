# omnimer-sweeps: the two commands of the quick start are `make demo` and `make test`.
PYTHON_BOOT ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= runs/demo
# torch, torchvision and torchaudio come first, from the pins in pyproject.toml, so that
# DeepSpeed's source build (no build isolation) compiles against that torch and pip never
# resolves a second one.
TORCH_PINS = $(shell grep -oE '"(torch|torchvision|torchaudio)==[^"]+"' pyproject.toml | tr -d '"')
DEEPSPEED_PIN = $(shell grep -oE '"deepspeed==[^"]+"' pyproject.toml | tr -d '"')

.PHONY: venv demo test bench bench-planted gpu-check lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip==26.3" "setuptools==84.2.1" "wheel==0.48.0"
	$(PY) -m pip install -q $(TORCH_PINS)
	$(PY) -m pip install -q --no-build-isolation $(DEEPSPEED_PIN)
	$(PY) -m pip install -q -e '.[dev]'
	# DeepSpeed JIT-compiles its shared-memory collective op (about a minute of a C++ compiler on 2
	# cores) the first time a worker initialises it; built here, into .venv/torch_extensions where
	# the workers look for it and with the venv's ninja as they use it, the first trials of a sweep
	# do not wait for it. (A no-op where the accelerator has no such op.)
	$(PY) -c "from omnimer.training.engine import build_ops; build_ops()"
	touch $(STAMP)

# The demo's steps are file targets, so a second `make demo` reuses the corpus and the shards.
DEMO_CORPUS := $(DEMO_DIR)/corpus
DEMO_SHARDS := $(DEMO_DIR)/shards
OMNIMER := $(VENV)/bin/omnimer

DEMO_MODEL := $(DEMO_DIR)/tiny-model

DEMO_EXPERIMENT := $(DEMO_DIR)/sweeps/demo

# The main job on the embedded default: the aux-task ablation sweep (2³ subsets × 2 seeds) on a local
# Ray, which ends by printing the ablation table and the Shapley lines (those of `python -m analysis
# summary`); then the report with plots. A second `make demo` resumes the sweep and re-runs no
# finished trial. How many runs each trial trains in one worker group is measured first
# (--runs-per-trial auto: a probe, as --plan; on a 2-core machine it takes 8, one seed's 8 runs per
# trial, 2 trials, one per core); a resumed sweep keeps its grouping.
DEMO_SWEEP = $(PY) sweeps/aux_ablation.py --mode ablation --config sweeps/configs/demo.yaml --name demo \
	--storage-path $(DEMO_DIR)/sweeps --seeds 0,1 --runs-per-trial auto data.path=$(DEMO_SHARDS) \
	model.name_or_path=$(DEMO_MODEL)

demo: venv $(DEMO_SHARDS)/dataset.json $(DEMO_MODEL)/config.json
	$(OMNIMER) inspect $(DEMO_SHARDS)
	$(DEMO_SWEEP)
	$(PY) -m analysis report $(DEMO_EXPERIMENT) --out $(DEMO_DIR)/report

$(DEMO_MODEL)/config.json: | venv
	$(OMNIMER) tiny-model --out $(DEMO_MODEL)

$(DEMO_CORPUS)/Annotations.csv: | venv
	$(OMNIMER) synth --out $(DEMO_CORPUS) --clips 200 --speakers 20 --seed 0

$(DEMO_SHARDS)/dataset.json: $(DEMO_CORPUS)/Annotations.csv
	$(OMNIMER) ingest --format indomer --input $(DEMO_CORPUS) --out $(DEMO_SHARDS) --frames 4 --size 56 \
		--max-audio-seconds 4 --overwrite

test: venv
	$(PY) -m pytest tests --durations=15

# The bench measures the demo sweep's efficiency, so it runs that sweep once if it has not run.
$(DEMO_EXPERIMENT)/invocations.json: | venv $(DEMO_SHARDS)/dataset.json $(DEMO_MODEL)/config.json
	$(DEMO_SWEEP)

bench: venv $(DEMO_EXPERIMENT)/invocations.json
	$(PY) -m tests.bench --sweep $(DEMO_EXPERIMENT)

# The planted-effect check of the whole instrument (not CI; about 20-45 min on 2 cores): a corpus in
# which only the video carries the label (the transcript and the voice are independent of it) and only
# the face aux target describes it; a linear probe on its pixels (is the label in the frames?); the
# 2³ ablation × 3 seeds of the demo's config on it, ending with the ablation table (clip-level
# intervals) and the Shapley values. Expected: face the largest,
# its interval excluding 0.
PLANTED_DIR ?= runs/planted
PLANTED_SWEEP = $(PY) sweeps/aux_ablation.py --mode ablation --config sweeps/configs/demo.yaml --name planted \
	--storage-path $(PLANTED_DIR)/sweeps --seeds 0,1,2 data.path=$(PLANTED_DIR)/shards model.name_or_path=$(DEMO_MODEL)

$(PLANTED_DIR)/corpus/Annotations.csv: | venv
	$(OMNIMER) synth --out $(PLANTED_DIR)/corpus --clips 200 --speakers 20 --seed 0 --label-in video

$(PLANTED_DIR)/shards/dataset.json: $(PLANTED_DIR)/corpus/Annotations.csv
	$(OMNIMER) ingest --format indomer --input $(PLANTED_DIR)/corpus --out $(PLANTED_DIR)/shards --frames 4 \
		--size 56 --max-audio-seconds 4 --overwrite

bench-planted: venv $(PLANTED_DIR)/shards/dataset.json $(DEMO_MODEL)/config.json
	$(PY) -m tests.bench.planted_probe $(PLANTED_DIR)/shards
	$(PLANTED_SWEEP)

# On a machine with a CUDA GPU (not part of CI): the GPU tests, bf16 ZeRO-2/3 runs of the tiny model and
# a 2-trial Ray Tune ablation on one GPU, with one summary (tests/bench/gpu_check.py).
gpu-check: venv
	$(PY) -m tests.bench.gpu_check --out runs/gpu-check

lint: venv
	$(VENV)/bin/ruff check omnimer analysis sweeps tests

clean:
	rm -rf runs
