# Provider image for Kubernetes {{ k8s_distribution }} {{ k8s_version }}: the base image plus the
# Kairos provider and the Kubernetes binaries.
FROM {{ k8s_image }} AS kubernetes
FROM {{ provider_image }} AS provider
FROM {{ base_tag }}
COPY --from=provider / /
COPY --from=kubernetes / /
{% if edge_custom_config %}COPY edge-custom-config.yaml /oem/.edge_custom_config.yaml
{% endif -%}
RUN printf 'K8S_DISTRIBUTION=%s\nK8S_VERSION=%s\n' '{{ k8s_distribution }}' '{{ k8s_version }}' > /etc/forge-provider
