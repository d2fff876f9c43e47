# embedfleet/redis: Debian's redis-server 7.0 configured for the job bus:
# AOF with appendfsync everysec, password from a secret file (never on the
# command line, in the environment shown by `docker inspect`, or in a log).
ARG BASE_IMAGE=embedfleet/base:bookworm
FROM ${BASE_IMAGE}

RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server redis-tools \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o redis -g redis /data

COPY redis.conf /etc/embedfleet/redis.conf
COPY redis-entrypoint.sh /usr/local/bin/embedfleet-redis
VOLUME /data
EXPOSE 6379
USER redis
WORKDIR /data
ENTRYPOINT ["/usr/local/bin/embedfleet-redis"]
