# aging: reproducible entry points. `make help` lists them.
# Every target sets up its own virtual environment (.venv) first.
#
#   TORCH   the torch requirement installed before the package. The default is the CPU build
#           this project's machines carry on disk; on a GPU machine pass your own, e.g.
#           `make demo TORCH=torch` (whatever pip resolves), or TORCH= to keep a torch you
#           installed into .venv yourself.

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.DEFAULT_GOAL := help
.PHONY: help install demo test bench bench-fetch bench-encode bench-figures bench-score study figures clean

help: ## Show this list of targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if [ -n "$(TORCH)" ]; then echo "installing $(TORCH)"; $(BIN)/python -m pip install -q "$(TORCH)"; fi
	$(BIN)/python -m pip install -q -e '.[test,eval]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP) ## Create .venv and install aging (editable) with its test and image-scoring tools

demo: $(STAMP) ## Offline demo on synthetic latents -> runs/demo/ (summary.md, comparison.md, charts)
	$(BIN)/aging demo

test: $(STAMP) ## Run the test suite (pytest)
	$(BIN)/python -m pytest

# The study's model comparison. DATA is any latent dataset (encoded photos, the study's published
# latents); by default a synthetic one is made first.
DATA ?= data/synth
study: $(STAMP) ## The study's model comparison (the bundled aging/configs/experiments/study.toml) on DATA -> runs/study/
	@test -d $(DATA) || $(BIN)/aging synth $(DATA)
	$(BIN)/python scripts/latent_stats.py $(DATA)
	$(BIN)/aging evaluate $(DATA) --experiment study -o runs/study

# The study's figures, tables and report (aging figures). DATA as for `study`; FULL=1 runs the whole MLP
# grid of Fig 14; DIRECTION=age.npy uses a published age direction for Fig 15; GEN=G.pkl draws Fig 1 as
# faces and writes the aging videos (Figs 3.1/3.2, 5.1/5.2), PHOTOS=data/<subject> their real photos.
OUT ?= figures
FIGURES_FLAGS = $(if $(FULL),--full) $(if $(DIRECTION),--direction $(DIRECTION)) \
	$(if $(GEN),--generator $(GEN)) $(if $(PHOTOS),--photos $(PHOTOS))
figures: $(STAMP) ## The study's figures, tables and report on DATA -> figures/ (OUT=...; report.html, .md, .json)
	@test -d $(DATA) || $(BIN)/aging synth $(DATA)
	$(BIN)/aging figures $(DATA) -o $(OUT) $(FIGURES_FLAGS)

bench: $(STAMP) ## Benchmarks of the age models -> benchmarks/results/*.json
	$(BIN)/python benchmarks/bench_models.py --json benchmarks/results/models.json

bench-fetch: $(STAMP) ## Benchmark of aging fetch (600-photo 720p video built from the fixture faces)
	$(BIN)/python benchmarks/bench_fetch.py --json benchmarks/results/fetch.json

bench-encode: $(STAMP) ## Benchmark of aging encode: study setting (every photo; cached) vs defaults (CPU: 64 px tiny generator)
	$(BIN)/python benchmarks/bench_encode.py --device cpu --preset tiny --resolution 64 --photos 64 --batch 4 --threads 1 \
		--study-cache benchmarks/results/encode_cpu64_study.json --json benchmarks/results/encode_cpu64.json

bench-figures: $(STAMP) ## Benchmark of aging figures: synthetic default and one subject of 186 photos
	$(BIN)/python benchmarks/bench_figures.py --json benchmarks/results/figures.json

bench-score: $(STAMP) ## Benchmark of aging score: 500 generated frames at 256 px against the fixture faces
	$(BIN)/python benchmarks/bench_score.py --frames 500 --size 256 --json benchmarks/results/score.json

clean: ## Remove the virtual environment and generated outputs (keeps data/)
	rm -rf $(VENV) runs figures benchmarks/results .pytest_cache
