{#- SLES: AppArmor, rsyslog and logrotate, as for openSUSE. -#}
RUN zypper install -y apparmor-parser apparmor-profiles rsyslog logrotate
RUN zypper cc && zypper clean
RUN if [ ! -e /usr/bin/apparmor_parser ]; then cp /sbin/apparmor_parser /usr/bin/apparmor_parser; fi
