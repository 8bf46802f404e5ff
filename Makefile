# A thin front for the README's two commands. CMake does the building; ctest runs the tests.
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: setup build run test bench fuzz clean chart-rules

setup:
	bash .ci/setup.sh

build: setup
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo
	cmake --build $(BUILD) -j $(JOBS)

# Runs the agent on this host with its default config and rule pack.
run: build
	./$(BUILD)/vigil agent

# Every test. Under CI=true a privileged test that would skip fails instead.
test: build
	cd $(BUILD) && VIGIL_REQUIRE_PRIVILEGED=$(if $(CI),1,$(VIGIL_REQUIRE_PRIVILEGED)) \
	  ctest --output-on-failure --timeout 600

# Every benchmark of docs/benchmarks.md, in one go (root, about 8 minutes after the build).
# Each prints a summary line and a JSON line; a missed target is reported, only a failed
# measurement fails the target.
bench: build
	@rc=0; \
	for s in bpf_cost wrk_ratio drop_cost audit_cost agent_footprint agent_start nab; do BUILD=$(BUILD) NAB_JSON=1 bash tests/bench/$$s.sh || rc=1; done; \
	for b in vigil_rules_bench vigil_kube_lines_bench vigil_netstat_bench; do \
	  if [ -x $(BUILD)/tests/bench/$$b ]; then $(BUILD)/tests/bench/$$b || rc=1; \
	  else echo "bench: $(BUILD)/tests/bench/$$b not built (libbenchmark-dev missing?)"; rc=1; fi; \
	done; \
	exit $$rc

# The fuzz targets of tests/fuzz, built with AddressSanitizer and UBSan and guided by coverage
# (a second build tree, $(FUZZ_BUILD)), each run for FUZZ_SECONDS (default 60) from its corpus.
# An input that breaks one is kept in $(FUZZ_BUILD)/fuzz-artifacts (docs/fuzzing.md).
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = $(patsubst tests/fuzz/fuzz_%.cpp,%,$(wildcard tests/fuzz/fuzz_*.cpp))
fuzz: setup
	cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVIGIL_SANITIZE=ON -DVIGIL_FUZZ_COVERAGE=ON
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target $(addprefix vigil_fuzz_,$(FUZZ_TARGETS))
	mkdir -p $(FUZZ_BUILD)/fuzz-artifacts
	@rc=0; for t in $(FUZZ_TARGETS); do \
	  dict=; [ -f tests/fuzz/dict/$$t.dict ] && dict="--dict tests/fuzz/dict/$$t.dict"; \
	  seeds=tests/fuzz/corpus/$$t; [ $$t = rules ] && seeds="$$seeds rules/pack tests/unit/testdata/rules"; \
	  echo "fuzz: $$t"; \
	  ./$(FUZZ_BUILD)/tests/fuzz/vigil_fuzz_$$t --seconds $(FUZZ_SECONDS) --runs 100000000 $$dict \
	    --artifacts $(FUZZ_BUILD)/fuzz-artifacts $$seeds || rc=1; \
	done; exit $$rc

# Copies the shipped rule pack into the Helm chart (Helm reads no file outside the chart);
# ctest chart_rules_in_sync fails until the copy matches rules/pack/ byte for byte.
chart-rules:
	rm -f charts/vigil/rules/*.lua
	cp rules/pack/*.lua charts/vigil/rules/

clean:
	rm -rf $(BUILD)
