# A thin front for the README's two commands. CMake does the building; ctest runs the tests.
BUILD ?= build
JOBS ?= $(shell nproc)

.PHONY: setup build run test clean

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

clean:
	rm -rf $(BUILD)
