# Thin wrapper over scripts/: the real build is CMake, the real test command scripts/test.sh.
MAKEFLAGS += --no-print-directory
.PHONY: all build test test-asan test-tsan format run clean

all: build

build:
	cmake -S . -B build
	cmake --build build -j$$(nproc)

test:
	bash scripts/test.sh

test-asan:
	bash scripts/test.sh --sanitize=address,undefined

test-tsan:
	bash scripts/test.sh --sanitize=thread

format:
	find src include tests bench -name '*.[ch]' 2>/dev/null | xargs -r clang-format -i

run:
	bash scripts/run.sh

clean:
	rm -rf build build-asan build-tsan
