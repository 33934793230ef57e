.PHONY: all deps test-all demo bench

all: deps

deps:
	./quickstart/deps.sh

test-all:
	./test-all.sh

demo:
	./quickstart/demo.sh

bench:
	./bench/run.sh
