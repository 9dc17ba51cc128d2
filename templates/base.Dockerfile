# Base image: the OS every provider and installer image starts from.
# Proxies reach RUN steps as Docker's predefined build args, which never enter the history.
FROM {{ base_image }}
COPY certs/ /usr/local/share/ca-certificates/forge/
RUN if command -v update-ca-certificates >/dev/null 2>&1; then update-ca-certificates; fi
{% if update_kernel %}RUN if command -v apt-get >/dev/null 2>&1; then apt-get update && apt-get install -y --only-upgrade 'linux-image-*' && rm -rf /var/lib/apt/lists/*; fi
{% endif -%}
RUN rm -f /etc/ssh/ssh_host_* && rm -f /etc/machine-id /var/lib/dbus/machine-id && touch /etc/machine-id && chmod 444 /etc/machine-id
{{ user_dockerfile }}
