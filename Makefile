# The two README commands: `make demo` and `make test`. Each installs what it needs (Debian
# packages; for tests also Java, Maven and Kafka jars), builds, and runs.
JOBS ?= 2

.PHONY: all deps build demo test test-unit test-asan test-tsan asan clean

all: build

deps:
	@./deploy/scripts/install-deps.sh

build: deps
	@cmake --preset default >/dev/null
	@cmake --build --preset default -j $(JOBS)

demo: build
	@python3 deploy/demo/demo.py --bin build/bin --workdir demo-run

# Tests also need real Apache Kafka (fault rounds, label `kafka`): Java 17, Maven and the Kafka
# jars from Maven Central are installed by the project's own scripts.
# After the suite, the ASan+UBSan build runs the unit tests, the fuzz corpora and a selection of
# end-to-end tests (label `sanitize`) on instrumented binaries, then the TSan build its own (`tsan`).
test: build
	@./deploy/scripts/install-deps.sh --kafka
	@./deploy/kafka/fetch-kafka.sh >/dev/null
	@ctest --preset default -j 1
	@$(MAKE) --no-print-directory test-asan
	@$(MAKE) --no-print-directory test-tsan

# What the ASan+UBSan step builds: the unit tests, the fuzz targets (their corpora replay), and
# the binaries the end-to-end selection runs.
ASAN_TARGETS = unit_tests audit_tests sta_unit_tests uopd uopctl policy_loader_fuzz \
	record_eval_fuzz audit_segment_fuzzer audit_proof_fuzzer sta_observation_fuzz

test-asan: deps
	@cmake --preset asan >/dev/null
	@cmake --build --preset asan -j $(JOBS) --target $(ASAN_TARGETS)
	@ctest --preset asan -L 'unit|fuzz|sanitize' -j 1

# The ThreadSanitizer build: the unit tests, a self-test that it reports a race, and one
# end-to-end test (label `tsan`); Debian's abseil and librdkafka's C11 threads are made visible
# to TSan by tests/tsan/absl_sync_annotations.cc, gRPC's internals suppressed (see there).
TSAN_TARGETS = unit_tests audit_tests sta_unit_tests uopd uopctl tsan_selftest

test-tsan: deps
	@cmake --preset tsan >/dev/null
	@cmake --build --preset tsan -j $(JOBS) --target $(TSAN_TARGETS)
	@ctest --preset tsan -L 'unit|tsan' -j 1

test-unit: build
	@ctest --preset default -L unit

# Sanitizer build of everything; runs unit and integration tests under ASan+UBSan.
asan: deps
	@cmake --preset asan >/dev/null
	@cmake --build --preset asan -j $(JOBS)
	@ctest --preset asan -L 'unit|integration' -j 1

clean:
	rm -rf build build-asan demo-run
