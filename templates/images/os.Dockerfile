# The user's base-image steps when the checkout has no Dockerfile of its own: what CanvOS's
# Dockerfile does. Built with the build arguments BASE (the OS base image), OS_DISTRIBUTION,
# OS_VERSION, the proxies and DRBD_VERSION; its context holds certs/.
ARG BASE
FROM $BASE
ARG OS_DISTRIBUTION
COPY certs/ /certs/
RUN if [ "$OS_DISTRIBUTION" = "ubuntu" ]; then cp -a /certs/. /usr/local/share/ca-certificates/ && update-ca-certificates; fi
RUN if [ "$OS_DISTRIBUTION" = "opensuse-leap" ]; then cp -a /certs/. /usr/share/pki/trust/anchors/ && update-ca-certificates; fi
RUN if [ "$OS_DISTRIBUTION" = "rhel" ]; then cp -a /certs/. /etc/pki/ca-trust/source/anchors/ && update-ca-trust; fi
RUN rm -rf /certs
RUN if [ -f /etc/cos/bootargs.cfg ] && ! grep -Fq "systemd.unified_cgroup_hierarchy=1" /etc/cos/bootargs.cfg; then sed -i 's|\(set baseCmd="[^"]*\)"|\1 systemd.unified_cgroup_hierarchy=1"|' /etc/cos/bootargs.cfg; fi
