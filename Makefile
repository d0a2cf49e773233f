# The two commands of the README. Both set up a fresh machine first (idempotent).
.PHONY: setup test demo bench lint

setup:
	scripts/setup.sh

test: setup
	npm test

demo: setup
	npm run demo

bench: setup
	npm run bench

lint:
	npm run lint
