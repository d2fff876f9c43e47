# embedfleet/manager: `python -m manager` (scan, enqueue, reconcile, journal)
# with its status API and dashboard on :8080.
#
# Dependencies come from a wheelhouse the build script serves on loopback
# (WHEELS_URL, build with --network host): nothing is fetched from an index
# inside the build, and the wheels are downloaded once per machine.
ARG PYTHON_IMAGE=embedfleet/python:latest
FROM ${PYTHON_IMAGE}

ARG WHEELS_URL=http://127.0.0.1:38765/
COPY requirements.txt /opt/embedfleet/requirements.txt
RUN pip install --no-index --find-links "${WHEELS_URL}" -r /opt/embedfleet/requirements.txt

# The project itself last: a code change rebuilds only this layer.
COPY wheel/ /tmp/wheel/
RUN pip install --no-index --no-deps /tmp/wheel/*.whl && rm -rf /tmp/wheel \
    && python -c 'import manager._core, bus.redis_transport'

USER embedfleet
WORKDIR /var/lib/embedfleet
EXPOSE 8080
CMD ["python", "-m", "manager", "serve"]
