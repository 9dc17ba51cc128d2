//! The typed model of an edge installer user-data file (`#cloud-config`): the `stylus` block
//! of the Palette agent and the Kairos keys around it. `forge schema user-data` and the
//! validator are both generated from these types; doc comments become schema descriptions.

use std::collections::BTreeMap;

use base64::Engine as _;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Any;

use super::stages::Stage;
use crate::secret::Credentials;

/// Edge installer user-data: a `#cloud-config` document with the Palette agent's `stylus`
/// block and Kairos installer keys.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(title = "Palette edge installer user-data")]
pub struct UserData {
    /// Palette agent (stylus) settings.
    pub stylus: Option<Stylus>,
    /// Kairos installer settings.
    pub install: Option<Install>,
    /// cloud-init stages run by the Kairos agent (`initramfs`, `boot`, `network`, ...): each
    /// stage is a list of yip steps.
    #[schemars(extend("x-go-decoded" = "yip cannot load this file's stages, so none of them run"))]
    pub stages: Option<BTreeMap<String, Vec<Stage>>>,
    /// Kairos users to create.
    pub users: Option<Any>,
    /// Kairos host name.
    pub hostname: Option<String>,
    /// Kairos SSH keys.
    pub ssh_authorized_keys: Option<Any>,
    /// Kairos files to write.
    pub write_files: Option<Any>,
    /// Kairos commands to run.
    pub runcmd: Option<Any>,
    /// Kairos bundles to install.
    pub bundles: Option<Any>,
    /// Kairos reset settings.
    pub reset: Option<Any>,
    /// Kairos upgrade settings.
    pub upgrade: Option<Any>,
    /// Kairos debug output.
    pub debug: Option<bool>,
    /// Kairos strict mode.
    pub strict: Option<bool>,
    /// Kairos k3s settings.
    pub k3s: Option<Any>,
    /// Kairos k3s agent settings.
    #[serde(rename = "k3s-agent")]
    pub k3s_agent: Option<Any>,
    /// Kairos p2p settings.
    pub p2p: Option<Any>,
    /// Kairos boot options.
    pub options: Option<Any>,
    /// Kairos log settings.
    pub logs: Option<Any>,
    /// Kairos name.
    pub name: Option<String>,
}

/// The Palette agent block.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stylus {
    /// Debug output.
    pub debug: Option<bool>,
    /// Trace output.
    pub trace: Option<bool>,
    /// Forbid OS user password updates from Local UI.
    pub disable_password_update: Option<bool>,
    /// Disable the Palette terminal UI.
    pub disable_tui: Option<bool>,
    /// Let the host link with others to form a multi-node cluster.
    pub enable_multi_node: Option<bool>,
    /// The Palette TUI is always enabled, whatever this says: remove the key.
    #[schemars(extend("deprecated" = true))]
    pub include_tui: Option<bool>,
    /// Replaced by `managementMode` (`connected` is `central`, `airgap` is `local`);
    /// deprecated in Palette 4.6 and no longer read from Palette 4.8.
    #[schemars(extend("deprecated" = true))]
    pub installation_mode: Option<InstallationMode>,
    /// Dropped from the installer reference with no documented replacement: remove the key.
    #[schemars(extend("deprecated" = true))]
    pub image_override: Option<String>,
    /// The Edge Management Console is now Local UI: use `localUI.port`.
    #[schemars(extend("deprecated" = true))]
    pub emc_server: Option<EmcServer>,
    /// Several external registries and mapping rules. Do not combine with `registryCredentials`.
    pub external_registries: Option<ExternalRegistries>,
    /// Comma-separated feature gates: `UserDataForm`, `DisableWorkerNodeCapReconcile`.
    #[schemars(extend("format" = "feature-gates"))]
    pub feature_gate: Option<String>,
    /// Local UI settings.
    #[serde(rename = "localUI")]
    pub local_ui: Option<LocalUi>,
    /// `central` (connected to Palette) or `local` (no Palette connection).
    pub management_mode: Option<ManagementMode>,
    /// Agent installation root (the agent installs below PATH/opt/spectrocloud).
    #[schemars(extend("format" = "absolute-path"))]
    pub path: Option<String>,
    /// A single external registry that every image is pulled from, prefixed by its domain.
    pub registry_credentials: Option<Registry>,
    /// Site registration, network and certificates.
    pub site: Option<Site>,
    /// kube-vip settings.
    pub vip: Option<Vip>,
    /// The webhook that redirects image pulls to the external or primary registry.
    pub image_redirect_webhook: Option<ImageRedirectWebhook>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InstallationMode {
    Connected,
    Airgap,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct EmcServer {
    pub port: Option<u16>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ManagementMode {
    /// The host is managed by Palette.
    Central,
    /// The host has no connection to Palette.
    Local,
}

/// Registry credentials, as in `registryCredentials` and `externalRegistries.registries[]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Registry {
    /// `host[:port][/path]`, without a scheme, e.g. `10.10.254.254:8000/spectro-images`.
    pub domain: String,
    /// Basic-auth user name.
    pub username: Option<String>,
    /// Basic-auth password (base64 when `encodedPassword` is true).
    #[schemars(extend("writeOnly" = true))]
    pub password: Option<String>,
    /// Repository inside the registry (multiple-registry form only).
    pub repository_name: Option<String>,
    /// Whether `password` is base64-encoded.
    pub encoded_password: Option<bool>,
    /// Allow plain HTTP and unverified TLS.
    pub insecure: Option<bool>,
    /// PEM CA certificates that sign the registry's TLS certificate.
    pub certificates: Option<Vec<String>>,
}

impl Registry {
    /// The username and the password the registry expects (decoded when `encodedPassword` is
    /// true; a password that does not decode is none, which validation reports), when both
    /// are given: the one place a user-data password is decoded.
    pub fn credentials(&self) -> Option<Credentials> {
        let username = self.username.clone().filter(|u| !u.is_empty())?;
        let password = match (&self.password, self.encoded_password) {
            (Some(p), Some(true)) => base64::engine::general_purpose::STANDARD
                .decode(p)
                .ok()
                .and_then(|b| String::from_utf8(b).ok()),
            (p, _) => p.clone(),
        };
        let password = password.filter(|p| !p.is_empty())?;
        Some(Credentials { username, password })
    }
}

/// Several external registries and the rules mapping image prefixes to them.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRegistries {
    /// The registries and their credentials.
    pub registries: Option<Vec<Registry>>,
    /// Source prefix → target registry URL. The longest matching prefix wins and the rest of
    /// the reference is kept.
    pub registry_mapping_rules: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalUi {
    /// Port Local UI listens on (default 5080).
    #[schemars(range(min = 1))]
    pub port: Option<u16>,
    /// Login rate limiting.
    pub login: Option<LocalUiLogin>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalUiLogin {
    /// Failed logins before the delay starts doubling (default 3; agent 4.7.16 or later).
    pub attempts_before_exponential_delay_starts: Option<u32>,
    /// Turn login rate limiting off (agent 4.7.16 or later).
    pub disable_rate_limiting: Option<bool>,
    /// Minutes a locked-out login stays blocked (default 15).
    pub lockout_duration_in_minutes: Option<u32>,
    /// Failed logins before the lock-out (default 5).
    pub max_failed_attempts_before_lockout: Option<u32>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Vip {
    /// Skip kube-vip and use an external load balancer.
    pub skip: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct ImageRedirectWebhook {
    /// Redirect image pulls to the external or primary registry (default true).
    pub enable: Option<bool>,
    /// Port the webhook listens on (default 0: the agent's choice).
    pub port: Option<u16>,
}

/// Site registration and host settings.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Site {
    /// PEM CA certificates the agent trusts (e.g. for a TLS-intercepting proxy).
    pub ca_certs: Option<Vec<String>>,
    pub cluster_id: Option<String>,
    pub cluster_name: Option<String>,
    /// Files (and regular expressions) to read the device ID from.
    #[serde(rename = "deviceUIDPaths")]
    pub device_uid_paths: Option<Vec<DeviceUidPath>>,
    /// Tenant registration token for automatic registration.
    #[schemars(extend("writeOnly" = true))]
    pub edge_host_token: Option<String>,
    pub host_name: Option<String>,
    /// Skip TLS verification of the Palette endpoint.
    pub insecure_skip_verify: Option<bool>,
    /// Edge host ID: at most 128 characters, none of `/ ? # & + % , $ ~ ! @ * ( ) { } | = ; :
    /// < > ' . ^ "`; `$random` for a random one.
    #[schemars(extend("format" = "edge-host-id"))]
    pub name: Option<String>,
    pub network: Option<Network>,
    /// NTP servers, as a list or one comma-separated string.
    pub ntp_servers: Option<NtpServers>,
    /// Palette API endpoint, e.g. `api.spectrocloud.com`.
    pub palette_endpoint: Option<String>,
    /// Prefix of the generated device ID: letters, digits and `-`.
    #[schemars(extend("format" = "hostname-prefix"))]
    pub prefix: Option<String>,
    pub project_name: Option<String>,
    pub project_uid: Option<String>,
    /// URL shown as a QR code with the edge host ID, for registering the host.
    #[serde(rename = "registrationURL")]
    #[schemars(extend("format" = "url"))]
    pub registration_url: Option<String>,
    pub remote_shell: Option<RemoteShell>,
    /// Free-form tags.
    pub tags: Option<BTreeMap<String, Any>>,
    pub tags_from_file: Option<TagsFromFile>,
    pub tags_from_script: Option<TagsFromScript>,
    /// OS users created at site configuration.
    pub users: Option<Vec<SiteUser>>,
}

/// NTP servers: the reference types them as a string and describes a list, so both are read.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum NtpServers {
    List(Vec<NtpServer>),
    #[schemars(extend("format" = "host-list"))]
    Text(String),
}

/// A host name or IP address.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(transparent)]
#[schemars(extend("format" = "host"))]
pub struct NtpServer(pub String);

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DeviceUidPath {
    /// File holding the ID, e.g. `/sys/class/dmi/id/board_serial`.
    #[schemars(extend("format" = "absolute-path"))]
    pub name: String,
    /// RE2 expression extracting the ID.
    #[schemars(extend("format" = "regex"))]
    pub regex: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct RemoteShell {
    pub disable: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagsFromFile {
    /// File holding the tags.
    #[schemars(extend("format" = "absolute-path"))]
    pub file_name: String,
    /// Between two tags (default a newline).
    pub delimiter: Option<String>,
    /// Between a tag's key and value (default `:`).
    pub separator: Option<String>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TagsFromScript {
    /// Executable script printing a JSON object of tags.
    #[schemars(extend("format" = "absolute-path"))]
    pub script_name: String,
    /// Seconds the script may take (default 60).
    #[schemars(range(min = 1))]
    pub timeout: Option<u32>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SiteUser {
    pub name: String,
    pub groups: Option<Vec<String>>,
    #[schemars(extend("writeOnly" = true))]
    pub passwd: Option<String>,
    /// YYYY-MM-DD.
    #[schemars(extend("format" = "date"))]
    pub password_expiry: Option<String>,
    #[serde(rename = "lock_passwd")]
    pub lock_passwd: Option<bool>,
    #[serde(rename = "ssh_authorized_keys")]
    pub ssh_authorized_keys: Option<Vec<String>>,
}

/// Proxies, DNS and per-interface addressing.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    #[schemars(extend("format" = "proxy-url"))]
    pub http_proxy: Option<String>,
    #[schemars(extend("format" = "proxy-url"))]
    pub https_proxy: Option<String>,
    /// Comma-separated hosts, domains and CIDRs that bypass the proxy.
    pub no_proxy: Option<String>,
    /// Global DNS server.
    #[schemars(extend("format" = "ip"))]
    pub nameserver: Option<String>,
    /// Per-NIC settings, keyed by interface name (e.g. `eth0`).
    pub interfaces: Option<BTreeMap<String, Interface>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// `dhcp` (default) or `static`.
    #[serde(rename = "type")]
    pub kind: Option<AddressType>,
    /// Address with its prefix length (`10.0.10.25/24`), or a bare address with `mask`.
    #[schemars(extend("format" = "ip-or-cidr"))]
    pub ip_address: Option<String>,
    /// Netmask (255.255.255.0) or prefix length (24), for a bare `ipAddress`.
    #[schemars(extend("format" = "netmask"))]
    pub mask: Option<String>,
    #[schemars(extend("format" = "ip"))]
    pub gateway: Option<String>,
    #[schemars(extend("format" = "ip"))]
    pub nameserver: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AddressType {
    Dhcp,
    Static,
}

/// Kairos installer settings.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub struct Install {
    /// Target disk, or `auto`.
    pub device: Option<String>,
    /// Install without asking.
    pub auto: Option<bool>,
    pub reboot: Option<bool>,
    pub poweroff: Option<bool>,
    /// Image to install instead of the ISO's.
    pub image: Option<String>,
    #[serde(rename = "bind_mounts")]
    pub bind_mounts: Option<Vec<String>>,
    pub extra_dirs_rootfs: Option<Vec<String>>,
    #[serde(rename = "grub_options")]
    pub grub_options: Option<BTreeMap<String, Any>>,
    pub partitions: Option<Partitions>,
    pub extra_partitions: Option<Vec<Partition>>,
    pub env: Option<Vec<String>>,
    #[serde(rename = "no_format")]
    pub no_format: Option<bool>,
    pub encrypted_partitions: Option<Vec<String>>,
    pub system: Option<Any>,
    pub recovery_system: Option<Any>,
    pub passive: Option<Any>,
    pub skip_copy_kairos_conf: Option<bool>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Partitions {
    pub persistent: Option<Partition>,
    pub oem: Option<Partition>,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct Partition {
    pub name: Option<String>,
    /// MiB; 0 takes the rest of the disk.
    pub size: Option<u64>,
    pub fs: Option<String>,
    pub label: Option<String>,
}
