{#- Ubuntu (amd64): CanvOS's package set, the kernel held (or the HWE kernel with
    UPDATE_KERNEL=true), an upgrade, old kernels purged, /boot/vmlinuz and /boot/initrd links and
    a fresh initramfs (FIPS images keep theirs). arm64 images are used as they are. -#}
{% if arch == "amd64" -%}
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install --no-install-recommends snapd kbd zstd vim iputils-ping bridge-utils curl tcpdump ethtool rsyslog logrotate libpam-pwquality -y
{% if update_kernel -%}
RUN export DEBIAN_FRONTEND=noninteractive && apt-get update && apt-get install -y linux-image-generic-hwe-{{ os_version }}
{% else -%}
RUN if dpkg -l "linux-image-generic-hwe-{{ os_version }}" > /dev/null; then apt-mark hold "linux-image-generic-hwe-{{ os_version }}" "linux-headers-generic-hwe-{{ os_version }}" "linux-generic-hwe-{{ os_version }}"; fi && \
    if dpkg -l linux-image-generic > /dev/null; then apt-mark hold linux-image-generic linux-headers-generic linux-generic; fi
{% endif -%}
RUN export DEBIAN_FRONTEND=noninteractive && \
    apt-get update && \
    apt-get upgrade -y{% if update_kernel %} --with-new-pkgs{% endif %} && \
    apt-get install --no-install-recommends -y util-linux parted cloud-guest-utils gawk fdisk gdisk e2fsprogs dosfstools rsync cryptsetup-bin udev && \
    latest_kernel=$(printf '%s\n' /lib/modules/* | xargs -n1 basename | sort -V | tail -1 | awk -F '-' '{print $1"-"$2}') && \
{%- if fips_enabled %}
    for pkg in $(dpkg -l | awk '/^.i\s+linux-(image|headers|modules)/ {print $2}' | grep -v "$latest_kernel" | grep -v fips); do apt-mark unhold "$pkg" || true; done && \
    apt-get purge -y $(dpkg -l | awk '/^.i\s+linux-(image|headers|modules)/ {print $2}' | grep -v "${latest_kernel}" | grep -v fips) && \
{%- else %}
    apt-get purge -y $(dpkg -l | awk '/^ii\s+linux-(image|headers|modules)/ {print $2}' | grep -v "${latest_kernel}") && \
{%- endif %}
    apt-get autoremove -y && \
    rm -rf /var/lib/apt/lists/*
RUN kernel=$(ls /boot/vmlinuz-* | tail -n1) && ln -sf "${kernel#/boot/}" /boot/vmlinuz
{% if not fips_enabled -%}
RUN kernel=$(printf '%s\n' /lib/modules/* | xargs -n1 basename | sort -V | tail -1) && dracut -f "/boot/initrd-${kernel}" "${kernel}" && ln -sf "initrd-${kernel}" /boot/initrd
{% endif -%}
RUN kernel=$(printf '%s\n' /lib/modules/* | xargs -n1 basename | sort -V | tail -1) && depmod -a "${kernel}"
RUN if [ ! -f /usr/bin/grub2-editenv ]; then ln -s /usr/sbin/grub-editenv /usr/bin/grub2-editenv; fi
{% endif -%}
