# lastack — one command each for a newcomer on a fresh machine:
#   make test   install what is missing, build, run every test (needs root)
#   make demo   install what is missing, build, run the demo
# Other targets: deps, build, lint, fmt, docs, bench, bench-backend-leg,
# bench-profile, fuzz, clean.

# Debian packages the build and the tests need: clang/llvm compile the XDP
# program, libelf/zlib/m4/pkg-config build libbpf and libxdp, iproute2/
# ethtool/nftables build the test topologies (namespaces, veth, offloads, loss),
# nginx-light/curl/apache2-utils (ab)/wrk are the real HTTP backend and
# clients of the proxy tests (services are not started by the install);
# fonts-dejavu-core draws the benchmark charts; python3-venv holds
# kubernetes-validate (PyPI), which checks deploy/k8s against the Kubernetes
# schemas it ships, offline.
APT_PACKAGES := clang llvm libelf-dev zlib1g-dev m4 pkg-config linux-libc-dev \
                iproute2 ethtool nftables make gcc nginx-light curl apache2-utils wrk \
                fonts-dejavu-core python3-venv
KUBERNETES_VALIDATE_VERSION := 1.37.0
KUBERNETES_VALIDATE_VENV := target/tools/kubernetes-validate-$(KUBERNETES_VALIDATE_VERSION)
KUBERNETES_VALIDATE := $(abspath $(KUBERNETES_VALIDATE_VENV))/bin/kubernetes-validate
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)

.PHONY: all deps build release test lint fmt docs demo bench bench-backend-leg bench-engine-count bench-profile fuzz clean

all: build

# Installs only what is missing; runs `apt-get update` only when it installs.
deps:
	@missing=""; \
	for pkg in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q "install ok installed" \
			|| missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	else \
		echo "make deps: all build and test packages are installed"; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "make deps: cargo not found; install Rust with rustup first" >&2; exit 1; }

$(KUBERNETES_VALIDATE): | deps
	python3 -m venv $(KUBERNETES_VALIDATE_VENV)
	$(KUBERNETES_VALIDATE_VENV)/bin/pip install --quiet --disable-pip-version-check \
		kubernetes-validate==$(KUBERNETES_VALIDATE_VERSION)

build: deps
	$(CARGO) build --workspace --all-targets

release: deps
	$(CARGO) build --release

# Unit, property, BPF (BPF_PROG_TEST_RUN) and namespace integration tests.
# As root; with CI=true a test that cannot get root or namespaces fails.
test: deps $(KUBERNETES_VALIDATE)
	KUBERNETES_VALIDATE=$(KUBERNETES_VALIDATE) $(CARGO) test --workspace --all-targets

lint: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# docs/config.md is generated from the doc comments of src/config/schema.rs.
docs: deps
	$(CARGO) run --quiet -- check --explain > docs/config.md

# Criterion benches of the engine, then the churn comparison with HAProxy
# and nginx (benches/compare.sh: installs them, several minutes, as root).
bench: deps
	$(CARGO) bench
	$(SUDO) benches/compare.sh

# The engine's instructions and L1d misses per connection lifecycle, counted
# by callgrind: deterministic where timings wander. BASELINE=<rev> counts
# that revision too, side by side.
bench-engine-count: deps
	command -v valgrind >/dev/null || $(SUDO) apt-get install -y valgrind
	BASELINE=$(BASELINE) benches/engine_count.sh

# The backend leg on an untuned host, next to HAProxy and nginx: the
# sustained case for 60 s without TIME-WAIT reuse on kernel-chosen ports,
# then without TCP timestamps (no reuse at all), then with
# backend_close = "reset" (HAProxy: option nolinger). As root.
bench-backend-leg: deps
	$(SUDO) env PROXIES="lastack haproxy nginx" WORKLOADS="" TW_REUSE=0 SUSTAINED=60 benches/compare.sh
	$(SUDO) env PROXIES="lastack haproxy nginx" WORKLOADS="" TW_REUSE=0 TIMESTAMPS=0 SUSTAINED=60 benches/compare.sh
	$(SUDO) env PROXIES="lastack haproxy" WORKLOADS="" TW_REUSE=0 TIMESTAMPS=0 BACKEND_CLOSE=reset SUSTAINED=60 benches/compare.sh

# Where the CPU goes, per connection and per frame: frames per connection
# on each leg (lastack and HAProxy, tcpdump), and flame graphs of lastack
# and HAProxy under churn, side by side (perf + inferno; the .md beside each
# SVG splits the samples: kernel vs the proxy's code, and its peers' work
# that veth runs on its CPU). As root.
bench-profile: deps
	$(SUDO) benches/frames.sh
	$(SUDO) env PROXY=lastack benches/flamegraph.sh
	$(SUDO) env PROXY=haproxy benches/flamegraph.sh

# Fuzz the TCP engine with arbitrary segments, and the frame parser with
# frames (IP in IP included) into a forwarding instance (cargo-fuzz on the stable
# toolchain through RUSTC_BOOTSTRAP). FUZZ_SECONDS=600 make fuzz runs longer.
FUZZ_SECONDS ?= 120
fuzz: deps
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run segments corpus/segments -- \
		-max_total_time=$(FUZZ_SECONDS) -max_len=2048
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run frames corpus/frames -- \
		-max_total_time=$(FUZZ_SECONDS) -max_len=4096

# The demo (about a minute, as root): lastack in front of three backends in
# network namespaces, churn under both close policies, and where TIME-WAIT
# ended up. Everything it creates is removed at the end, also on Ctrl-C.
demo: release
	./target/release/lastack check -c config/demo.toml
	$(SUDO) ./target/release/lastack demo -c config/demo.toml

clean:
	$(CARGO) clean
