{#- One provider image per Kubernetes version (CanvOS's +provider-image). Variables: the
    settings; base_tag; the sources (provider_image, agent_image, third_party_image,
    binary_type, alpine_image, luet_repo, runtime_package, k8s_package and k8s_image for this
    version);
    bundle (systemd older than 255, or BUNDLE_K8S_AND_AGENT_PROVIDER), stylus_config (the
    stylus image has /etc/kairos/80_stylus.yaml), edge_custom_config, luet_auth,
    kernel_headers_script (the checkout has scripts/install-kernel-headers.sh). -#}
{% set kernel_headers = os_distribution == "ubuntu" and arch == "amd64" and (k8s_distribution == "kubeadm" or update_kernel) -%}
{% if kernel_headers and not kernel_headers_script %}{{ throw(message="the kernel headers of kubeadm and UPDATE_KERNEL builds on Ubuntu are installed by the checkout's scripts/install-kernel-headers.sh, which is not there: copy it from CanvOS into the checkout") }}{% endif -%}
# Provider image: {{ k8s_distribution }} {{ k8s_version }} on {{ os_distribution }} {{ os_version }}.
FROM {{ agent_image }} AS stylus
FROM {{ third_party_image }} AS third-party
{% if bundle -%}
FROM {{ provider_image }} AS provider
{% if k8s_image -%}
FROM {{ k8s_image }} AS kubernetes
{% else -%}
# Kubernetes from luet, in the builder image; only /output reaches the provider image.
FROM {{ alpine_image }} AS kubernetes
COPY certs/ /etc/ssl/certs/
RUN update-ca-certificates
COPY --from=third-party /binaries/luet/latest/{{ binary_type }}/{{ arch }}/luet /usr/bin/luet
WORKDIR /output
RUN mkdir -p /etc/luet/repos.conf.d && luet repo add spectro --type docker --url {{ luet_repo }} --priority 1 -y
{% if luet_auth -%}
# This stage's images hold the luet credentials from here on: forge removes them after the build.
LABEL dev.forge.secret=luet-auth
COPY spectro-luet-auth.yaml spectro-luet-auth.yaml
RUN cat spectro-luet-auth.yaml >> /etc/luet/repos.conf.d/spectro.yaml && rm -f spectro-luet-auth.yaml
{% endif -%}
RUN luet repo update
{% if runtime_package -%}
RUN luet install -y {{ runtime_package }} --system-target /output
{% endif -%}
RUN luet install -y {{ k8s_package }} --system-target /output && luet cleanup
RUN rm -rf /output/var/cache/*
{% endif -%}
{% endif -%}
# etcdctl, compressed with upx as CanvOS ships it.
FROM {{ alpine_image }} AS etcdctl
WORKDIR /WORKDIR
COPY --from=third-party /binaries/etcdctl/latest/{{ binary_type }}/{{ arch }}/etcdctl /WORKDIR/etcdctl
RUN upx -1 /WORKDIR/etcdctl

FROM {{ base_tag }}
{% if kernel_headers -%}
COPY install-kernel-headers.sh /tmp/install-kernel-headers.sh
RUN chmod 755 /tmp/install-kernel-headers.sh && /tmp/install-kernel-headers.sh
{% elif update_kernel and (os_distribution == "opensuse-leap" or os_distribution == "sles") -%}
RUN zypper --non-interactive ref && kernel=$(printf '%s\n' /lib/modules/* | xargs -n1 basename | sort -V | tail -1) && version=$(echo $kernel | sed 's/-default$//') && (zypper --non-interactive install --no-recommends kernel-default-devel-$version || zypper --non-interactive install --no-recommends kernel-devel || echo "kernel development packages not available, continuing without them")
{% elif update_kernel and os_distribution == "rhel" -%}
RUN yum clean all && yum makecache && kernel=$(printf '%s\n' /lib/modules/* | xargs -n1 basename | sort -V | tail -1) && (yum install -y kernel-devel-$kernel || yum install -y kernel-devel || echo "kernel development packages not available, continuing without them")
{% endif -%}
COPY overlay-etc/ /etc/
RUN if [ -f /etc/logrotate.d/stylus.conf ]; then chmod 644 /etc/logrotate.d/stylus.conf; fi
{% if bundle -%}
COPY --from=provider / /
RUN if ls /usr/local/system/providers/agent-provider-* >/dev/null 2>&1; then \
      mkdir -p /system/providers && \
      mv /usr/local/system/providers/agent-provider-* /system/providers/ && \
      rm -rf /usr/local/system/providers; \
    fi
RUN mkdir -p /etc/spectro-sysext && touch /etc/spectro-sysext/k8s-and-agent-provider-bundled
{% endif -%}
COPY --from=stylus /etc/kairos/branding /etc/kairos/branding
{% if stylus_config -%}
COPY --from=stylus /etc/kairos/80_stylus.yaml /etc/kairos/80_stylus.yaml
{% endif -%}
COPY --from=stylus /oem/stylus_config.yaml /etc/kairos/branding/stylus_config.yaml
COPY --from=stylus /etc/elemental/config.yaml /etc/elemental/config.yaml
{% if edge_custom_config -%}
COPY edge-custom-config.yaml /oem/.edge_custom_config.yaml
{% endif -%}
{% if bundle -%}
COPY --from=kubernetes {% if k8s_image %}/{% else %}/output/{% endif %} /
{% endif -%}
RUN rm -f /etc/ssh/ssh_host_* /etc/ssh/moduli
COPY --from=etcdctl /WORKDIR/etcdctl /usr/bin/
RUN touch /etc/machine-id && chmod 444 /etc/machine-id
{% if os_distribution == "ubuntu" and k8s_distribution == "nodeadm" -%}
RUN apt-get update -y && apt-get install -y gnupg && \
    /opt/nodeadmutil/bin/nodeadm install -p iam-ra {{ k8s_version }} && \
    /opt/nodeadmutil/bin/nodeadm install -p ssm {{ k8s_version }} && \
    find /opt/ssm -type f -name "amazon-ssm-agent.deb" -exec dpkg -i {} \; && \
    apt-get remove gnupg -y && apt autoremove -y && \
    mv /usr/local/bin/aws-iam-authenticator /usr/bin && \
    mv /usr/local/bin/aws_signing_helper /usr/bin && \
    cp /lib/systemd/system/amazon-ssm-agent.service /etc/systemd/system/snap.amazon-ssm-agent.amazon-ssm-agent.service
{% endif -%}
{% if kernel_headers -%}
RUN rm -f /tmp/install-kernel-headers.sh
{% endif -%}
