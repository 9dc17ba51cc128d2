{#- openSUSE Leap (amd64): kernel locked unless UPDATE_KERNEL=true, an update, a fresh
    initramfs, CanvOS's package set; then what openSUSE and SLES share. -#}
{% if arch == "amd64" -%}
{% if not update_kernel -%}
RUN zypper al kernel-de*
{% endif -%}
RUN zypper refresh && zypper update -y
RUN if [ -e /usr/bin/dracut ]; then kernel=$(printf '%s\n' /lib/modules/* | xargs -n1 basename | sort -V | tail -1) && depmod -a "${kernel}" && dracut -f "/boot/initrd-${kernel}" "${kernel}" && ln -sf "initrd-${kernel}" /boot/initrd; fi
RUN zypper install -y zstd vim iputils bridge-utils curl ethtool tcpdump && zypper cc && zypper clean
{% endif -%}
RUN zypper install -y apparmor-parser apparmor-profiles rsyslog logrotate
RUN zypper cc && zypper clean
RUN if [ ! -e /usr/bin/apparmor_parser ]; then cp /sbin/apparmor_parser /usr/bin/apparmor_parser; fi
