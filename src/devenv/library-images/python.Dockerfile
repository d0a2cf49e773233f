# A Python application image with a library at a version with known CVEs (urllib3
# 1.26.4: CVE-2021-33503 and later), on the environment's Debian bookworm rootfs (which
# has OS findings of its own). pip inside it reaches PyPI through the host's trust store
# (the `hostca` named context): copa's library update runs pip in this image.
FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-pip \
 && rm -rf /var/lib/apt/lists/*
COPY --from=hostca ca-certificates.crt /etc/ssl/certs/host-ca.crt
ENV PIP_BREAK_SYSTEM_PACKAGES=1 PIP_CERT=/etc/ssl/certs/host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir urllib3==1.26.4
CMD ["python3"]
