# Quick start: `make run` (demo behind gatehouse on :8080), `make test` (everything CI runs).
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 300
JOBS ?= $(shell nproc)
PY := /usr/bin/python3

.PHONY: bootstrap build run test unit asan fuzz fuzz-build format format-check bench clean

bootstrap:
	./scripts/bootstrap.sh

build: bootstrap
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j $(JOBS)

run: build
	./scripts/run-demo.sh $(BUILD)/gatehouse

asan: bootstrap
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DGATEHOUSE_SANITIZE=ON -DGATEHOUSE_BENCH=OFF -DGATEHOUSE_TEST_HOOKS=ON
	cmake --build $(ASAN_BUILD) -j $(JOBS)

test: build asan format-check
	cd $(BUILD) && ctest --output-on-failure -j 2
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -L unit
	cd $(ASAN_BUILD) && GATEHOUSE_ASAN=1 ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -L integration
	$(MAKE) fuzz FUZZ_SECONDS=60

# libFuzzer (clang, ASan + UBSan): tests/fuzz/regressions/<target>/ replayed once, then each target
# fuzzed for FUZZ_SECONDS on a copy of tests/fuzz/corpus/<target>/ kept in $(FUZZ_BUILD)/corpus
# (the repository corpus never grows). A crash fails the target; its input is written to
# $(FUZZ_BUILD)/artifacts/. Keep it as a regression once fixed.
FUZZ_MAX_LEN_request := 20000
FUZZ_MAX_LEN_config := 8192
FUZZ_DICT_request := tests/fuzz/http.dict
FUZZ_DICT_config := tests/fuzz/config.dict
FUZZ_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1

fuzz-build: bootstrap
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DGATEHOUSE_FUZZ=ON -DGATEHOUSE_BENCH=OFF
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target fuzz_request fuzz_config

# $(call fuzz_run,TARGET): regressions once, then the timed run.
define fuzz_run
	@set -e; bin=$(FUZZ_BUILD)/fuzz_$(1); \
	regressions=$$(find tests/fuzz/regressions/$(1) -type f 2>/dev/null | sort); \
	if [ -n "$$regressions" ]; then \
	  echo "fuzz_$(1): replaying $$(echo "$$regressions" | wc -l) regression inputs"; \
	  $(FUZZ_ENV) $$bin -timeout=10 $$regressions >$(FUZZ_BUILD)/regressions-$(1).log 2>&1 || \
	    { tail -n 60 $(FUZZ_BUILD)/regressions-$(1).log; echo "fuzz_$(1): a regression input fails" >&2; exit 1; }; \
	fi; \
	mkdir -p $(FUZZ_BUILD)/corpus/$(1); \
	cp -n tests/fuzz/corpus/$(1)/* $(FUZZ_BUILD)/corpus/$(1)/; \
	echo "fuzz_$(1): fuzzing for $(FUZZ_SECONDS) s (log: $(FUZZ_BUILD)/fuzz-$(1).log)"; \
	$(FUZZ_ENV) $$bin -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN_$(1)) -timeout=10 \
	  -dict=$(FUZZ_DICT_$(1)) -artifact_prefix=$(FUZZ_BUILD)/artifacts/$(1)- -print_final_stats=1 \
	  $(FUZZ_BUILD)/corpus/$(1) >$(FUZZ_BUILD)/fuzz-$(1).log 2>&1 || \
	  { tail -n 80 $(FUZZ_BUILD)/fuzz-$(1).log; echo "fuzz_$(1): crash; input in $(FUZZ_BUILD)/artifacts/" >&2; exit 1; }; \
	grep -E '^#[0-9]+' $(FUZZ_BUILD)/fuzz-$(1).log | tail -n 1; \
	grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' $(FUZZ_BUILD)/fuzz-$(1).log
endef

fuzz: fuzz-build
	@mkdir -p $(FUZZ_BUILD)/artifacts
	$(call fuzz_run,request)
	$(call fuzz_run,config)

format:
	find src tests bench -name '*.cpp' -o -name '*.hpp' | xargs clang-format -i

format-check:
	@bad=$$(find src tests bench -name '*.cpp' -o -name '*.hpp' | xargs clang-format --dry-run -Werror 2>&1 | grep -c 'error:' || true); \
	if [ "$$bad" != "0" ]; then echo "clang-format: $$bad problems; run make format" >&2; \
	  find src tests bench -name '*.cpp' -o -name '*.hpp' | xargs clang-format --dry-run -Werror; exit 1; fi

bench: build
	$(BUILD)/gatehouse_bench
	../shared/bench/compare.sh --gatehouse "$(BUILD)/gatehouse run --config bench/compare.yaml"
	../shared/bench/compare.sh --gatehouse "$(BUILD)/gatehouse run --config bench/compare.yaml" --path /large

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
