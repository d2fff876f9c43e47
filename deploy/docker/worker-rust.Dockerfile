# embedfleet/worker-rust: the embedfleet-worker binary, the ONNX Runtime
# library from the onnxruntime wheel, and the exported ONNX model. No Python.
#
# The build script stages into the context: embedfleet-worker (cargo build
# --release on a bookworm host, so glibc matches), lib/libonnxruntime.so.*,
# model/ (python -m models.export_onnx).
ARG BASE_IMAGE=embedfleet/base:bookworm
FROM ${BASE_IMAGE}

RUN groupadd --gid 10001 embedfleet \
    && useradd --uid 10001 --gid embedfleet --home-dir /var/lib/embedfleet --create-home \
        --shell /usr/sbin/nologin embedfleet \
    && install -d -o embedfleet -g embedfleet /data

COPY lib/ /opt/embedfleet/lib/
COPY model/ /opt/embedfleet/model/
COPY embedfleet-worker /usr/local/bin/embedfleet-worker
COPY entrypoint.sh /usr/local/bin/embedfleet-entrypoint
# Fail the build, not the first job, when a shared library is missing.
RUN ! ldd /usr/local/bin/embedfleet-worker /opt/embedfleet/lib/libonnxruntime.so* | grep -F 'not found'

ENV ORT_DYLIB_PATH=/opt/embedfleet/lib/libonnxruntime.so \
    EMBEDFLEET_MODEL_DIR=/opt/embedfleet/model \
    EMBEDFLEET_DATA_ROOT=/data
USER embedfleet
WORKDIR /var/lib/embedfleet
ENTRYPOINT ["/usr/local/bin/embedfleet-entrypoint"]
CMD ["embedfleet-worker"]
