.PHONY: all test demo bench clean

# The three binaries and the dev tools, into bin/.
all:
	bash -c '. scripts/lib.sh && build_all'

test:
	scripts/test.sh

demo:
	scripts/demo.sh

bench:
	scripts/bench-kproxy.sh

clean:
	rm -rf bin
