# Quick start: `make run` (demo behind gatehouse on :8080), `make test` (everything CI runs).
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
PY := /usr/bin/python3

.PHONY: bootstrap build run test unit asan format format-check bench clean

bootstrap:
	./scripts/bootstrap.sh

build: bootstrap
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j $(JOBS)

run: build
	./scripts/run-demo.sh $(BUILD)/gatehouse

asan: bootstrap
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DGATEHOUSE_SANITIZE=ON -DGATEHOUSE_BENCH=OFF
	cmake --build $(ASAN_BUILD) -j $(JOBS)

test: build asan format-check
	cd $(BUILD) && ctest --output-on-failure -j 2
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -L unit
	cd $(ASAN_BUILD) && GATEHOUSE_ASAN=1 ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -L integration

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
	rm -rf $(BUILD) $(ASAN_BUILD)
