{#- RHEL: OpenSSL, rsyslog and logrotate. -#}
RUN yum install -y openssl rsyslog logrotate
