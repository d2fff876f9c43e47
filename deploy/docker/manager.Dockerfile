# embedfleet/manager: `python -m manager` (scan, enqueue, reconcile, journal)
# with its status API and dashboard on :8377, and `python -m clusterer` with
# its dependencies (Compose's `cluster` service runs it over the volume).
#
# Dependencies come from a wheelhouse the build script serves on loopback
# (WHEELS_URL, build with --network host): nothing is fetched from an index
# inside the build, and the wheels are downloaded once per machine.
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

# The project itself last: a code change rebuilds only this layer.
COPY wheel/ /tmp/wheel/
RUN pip install --no-index --no-deps /tmp/wheel/*.whl && rm -rf /tmp/wheel \
    && python -m manager --help >/dev/null && python -c 'import models.source as m; print(m.model_id())' \
    && python -m clusterer --help >/dev/null && python -c 'import hdbscan, umap, sklearn, faiss, matplotlib, regex'

COPY entrypoint.sh /usr/local/bin/embedfleet-entrypoint
ENTRYPOINT ["/usr/local/bin/embedfleet-entrypoint"]
USER embedfleet
WORKDIR /var/lib/embedfleet
EXPOSE 8377
# One run over /data, then the dashboard stays up (--keep-serving) until
# SIGINT. Beyond loopback the API needs EMBEDFLEET_DASHBOARD_TOKEN(_FILE).
STOPSIGNAL SIGINT
CMD ["python", "-m", "manager", "serve", "--input", "/data", "--output", "/data", \
     "--host", "0.0.0.0", "--port", "8377", "--no-advertise", "--keep-serving"]
