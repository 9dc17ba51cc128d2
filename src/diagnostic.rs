//! Diagnostics: the rule catalog (stable codes and severities), the finding type every
//! validator produces, and the compiler-style text and JSON renderings of a report.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::limits::EXCERPT_CHARS;
use crate::secret::mask_line;

/// How bad a finding is. Errors fail validation (exit 1); warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    /// Something worth knowing that is not a problem (an optional file skipped).
    Note,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        }
    }
}

macro_rules! rules {
    ($($variant:ident = $code:literal, $severity:ident, $summary:literal;)*) => {
        /// Every check forge performs, each with a stable code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Rule {
            $($variant),*
        }

        impl Rule {
            /// The whole catalog, in code order.
            pub const ALL: &'static [Rule] = &[$(Rule::$variant),*];

            /// The stable code, e.g. `REG003`.
            pub fn code(self) -> &'static str {
                match self { $(Rule::$variant => $code),* }
            }

            pub fn severity(self) -> Severity {
                match self { $(Rule::$variant => Severity::$severity),* }
            }

            /// One line saying what the rule catches.
            pub fn summary(self) -> &'static str {
                match self { $(Rule::$variant => $summary),* }
            }
        }
    };
}

rules! {
    YamlSyntax = "YAML001", Error, "the file is not valid YAML as the agent reads it (syntax, a tag that does not fit its value, a merge key whose value is not mappings)";
    DuplicateKey = "YAML002", Error, "a mapping defines the same key twice";
    YamlLimit = "YAML003", Error, "excessive aliasing (aliases expanding to most of the document) or collections nested more than 128 levels deep";
    WrongType = "SCHEMA001", Error, "a value has the wrong type, or a key has no value";
    InvalidValue = "SCHEMA002", Error, "a value is outside what the key accepts (enumeration, range, format)";
    MissingKey = "SCHEMA003", Error, "a required key is missing";
    UnknownKey = "SCHEMA004", Warning, "a key the model does not know (probably a typo), or a stage name close to one the agent runs";
    DeprecatedKey = "SCHEMA005", Warning, "a deprecated key (the warning names its replacement)";
    MissingHeader = "UD001", Error, "the agent does not see a #cloud-config header in the first lines, so it skips the file";
    StaticInterfaceIncomplete = "UD002", Error, "a static network interface has no ipAddress, or a bare one without mask";
    UserDataTooLarge = "UD003", Error, "user-data of 2 MiB or more, which the agent skips";
    BadCertificate = "CERT001", Error, "a certificate entry is not a PEM X.509 certificate";
    ExpiredCertificate = "CERT002", Warning, "a certificate has expired or is not valid yet";
    BadRegistryDomain = "REG001", Error, "a registry domain is not host[:port][/path]";
    TokenAuthRegistry = "REG002", Error, "a registry needs token authentication, which the edge agent cannot do";
    AlphanumericPassword = "REG003", Warning, "a password of only letters and digits is mistaken for base64 by the agent";
    InsecureWithCertificates = "REG004", Warning, "insecure: true makes the registry certificates pointless";
    BadEncodedPassword = "REG005", Error, "encodedPassword is true but the password is not base64";
    IncompleteCredentials = "REG006", Error, "a registry has a username without a password or the reverse";
    BothRegistryStyles = "REG007", Error, "registryCredentials and externalRegistries are both set";
    UndeclaredMappingTarget = "REG008", Warning, "a mapping rule points at a registry that is not declared";
    ProviderPulledElsewhere = "REG009", Warning, "the user-data sends the edge host to pull a provider image from elsewhere than IMAGE_REGISTRY, where --push puts it";
    ProviderWithExternalRegistry = "PR001", Error, "authenticated provider registry combined with an authenticated external registry";
    ProviderWithPrimaryRegistry = "PR002", Error, "authenticated provider registry combined with a local Harbor / primary registry";
    AlwaysPullImages = "PR003", Error, "AlwaysPullImages is enabled while images come from an external or primary registry";
    ProviderCredentialsOverridden = "PR004", Warning, "the user-data registry replaces the profile's provider credentials";
    SeveralProviderRegistries = "PR005", Error, "more than one private provider registry";
    NoPacks = "PR006", Error, "the cluster profile lists no packs";
    UnresolvedTemplate = "PR007", Error, "an image or system.uri uses a {{ .spectro... }} value the profile does not define, or templates expanding past 1 MiB";
    ImageReplacementRulesWin = "PR008", Warning, "Registry Connect's imageReplacementRules take precedence over the user-data's registryMappingRules";
    ContentBundleIgnored = "PR009", Error, "content bundles with an external registry but no primary registry pack: the host ignores the bundles";
    BadImageReference = "IMG001", Error, "an image reference (in a profile, a list file or an argument) is not valid";
    UnpullableRewrite = "IMG002", Error, "the external registry rewrite turns an image into a reference the agent cannot pull";
    ArgSyntax = "CFG001", Error, "a .arg line is not KEY=VALUE";
    UnknownSetting = "CFG002", Warning, "a setting forge does not know (probably a typo)";
    UnsupportedSetting = "CFG003", Warning, "a CanvOS setting forge does not implement (ignored)";
    UndefinedVariable = "CFG004", Warning, "a $VAR reference to a variable that is not defined";
    BadImageRegistry = "CFG005", Error, "IMAGE_REGISTRY has a scheme or breaks DNS rules";
    BadCustomTag = "CFG006", Error, "CUSTOM_TAG holds characters an image tag cannot (letters, digits, '_', '.' and '-' only)";
    BadIsoName = "CFG007", Error, "ISO_NAME is not lowercase letters and digits separated by '-', '_' or '__'";
    BadArch = "CFG008", Error, "ARCH is not amd64 or arm64";
    UnknownK8sDistribution = "CFG009", Error, "K8S_DISTRIBUTION is not a known distribution";
    FipsWithUpdateKernel = "CFG010", Error, "FIPS_ENABLED and UPDATE_KERNEL are both true";
    K8sVersionNotInMatrix = "CFG011", Warning, "K8S_VERSION is not in the Kubernetes version matrix";
    BadSettingValue = "CFG012", Error, "a setting has a malformed value (boolean, version, proxy URL, ...)";
    MissingFile = "CFG013", Error, "a setting names a file that does not exist or is not a regular file";
    BadVersionMatrix = "CFG014", Error, "the Kubernetes version matrix file is not {\"distribution\": [\"x.y.z\", ...]}";
    ControlCharacter = "CFG015", Error, "a setting holds a line break or another control character";
    SecretOnCommandLine = "CFG016", Error, "a setting holding a password is given with --set, where every local user can read it";
    UnimplementedSetting = "CFG017", Error, "a CanvOS feature forge does not build yet is switched on (IS_UKI, IS_MAAS, TWO_NODE, ...)";
    OptionalFileAbsent = "CFG018", Note, "an optional file (CLUSTERCONFIG, EDGE_CUSTOM_CONFIG) is absent and skipped, as CanvOS does";
    BadComposedReference = "CFG019", Error, "an image reference composed from settings (provider image, ISO image) is not valid, e.g. a tag longer than 128 characters";
    EarthfileUnreadable = "CFG020", Warning, "the checkout's Earthfile sets a value forge needs in a way forge cannot read (a shell-out, a condition beyond shell tests); forge's default is used";
}

/// A position in a text file: 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub fn new(line: usize, column: usize) -> Pos {
        Pos { line, column }
    }
}

/// One finding: which rule, where (file, key path, line:column) and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub rule: Rule,
    pub severity: Severity,
    pub file: PathBuf,
    /// Key path such as `stylus.registryCredentials.password`, or the variable name for settings;
    /// at most [`EXCERPT_CHARS`](crate::limits::EXCERPT_CHARS) characters (keys are input too).
    pub path: String,
    pub pos: Pos,
    /// How many characters to underline at `pos` (at least one).
    pub width: usize,
    pub message: String,
    /// How to fix it, when there is something specific to say.
    pub help: Option<String>,
    /// Edits that fix it (`forge validate --fix`), when the fix is mechanical.
    pub fix: Vec<Edit>,
}

/// A text edit in character offsets: replace `start..end` by `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    pub start: usize,
    pub end: usize,
    pub text: String,
}

impl Edit {
    pub fn replace(start: usize, end: usize, text: String) -> Edit {
        Edit { start, end, text }
    }
}

/// Apply non-overlapping edits to `text`.
pub fn apply_edits(text: &str, edits: &[Edit]) -> String {
    let mut offsets: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    offsets.push(text.len());
    let byte = |c: usize| offsets[c.min(offsets.len() - 1)];
    let mut edits: Vec<&Edit> = edits.iter().collect();
    edits.sort_by_key(|e| std::cmp::Reverse((e.start, e.end)));
    let mut out = text.to_string();
    for edit in edits {
        out.replace_range(byte(edit.start)..byte(edit.end), &edit.text);
    }
    out
}

impl Diagnostic {
    pub fn new(
        rule: Rule,
        file: &Path,
        path: impl Into<String>,
        pos: Pos,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            rule,
            severity: rule.severity(),
            file: file.to_path_buf(),
            path: crate::limits::clip(&path.into()).into_owned(),
            pos,
            width: 1,
            message: message.into(),
            help: None,
            fix: Vec::new(),
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn fix(mut self, edits: Vec<Edit>) -> Self {
        self.fix = edits;
        self
    }

    pub fn width(mut self, width: usize) -> Self {
        self.width = width.max(1);
        self
    }
}

/// A finding as the JSON documents write it.
#[derive(Debug, Serialize)]
pub struct Finding<'a> {
    severity: Severity,
    code: &'static str,
    file: String,
    path: &'a str,
    line: usize,
    column: usize,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    help: Option<&'a str>,
}

impl<'a> From<&'a Diagnostic> for Finding<'a> {
    fn from(d: &'a Diagnostic) -> Finding<'a> {
        Finding {
            severity: d.severity,
            code: d.rule.code(),
            file: d.file.display().to_string(),
            path: &d.path,
            line: d.pos.line,
            column: d.pos.column,
            message: &d.message,
            help: d.help.as_deref(),
        }
    }
}

/// A report as the JSON documents write it: the findings and their counts.
impl Serialize for Report {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut report = serializer.serialize_struct("Report", 3)?;
        report.serialize_field("diagnostics", &self.findings())?;
        report.serialize_field("errors", &self.errors())?;
        report.serialize_field("warnings", &self.warnings())?;
        report.end()
    }
}

/// The findings of one run over one or more input files, with the sources needed to show
/// the offending lines.
#[derive(Debug, Default)]
pub struct Report {
    pub diagnostics: Vec<Diagnostic>,
    sources: Vec<(PathBuf, String)>,
}

impl Report {
    /// Remember a file's text so the text rendering can quote its lines.
    pub fn add_source(&mut self, file: &Path, text: &str) {
        self.sources.retain(|(f, _)| f != file);
        self.sources.push((file.to_path_buf(), text.to_string()));
    }

    pub fn extend(&mut self, diagnostics: impl IntoIterator<Item = Diagnostic>) {
        self.diagnostics.extend(diagnostics);
    }

    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == severity)
            .count()
    }

    /// Order findings by file, then position, then code, dropping exact repeats.
    pub fn sort(&mut self) {
        self.diagnostics.sort_by(|a, b| {
            (&a.file, a.pos, a.rule.code(), &a.path).cmp(&(&b.file, b.pos, b.rule.code(), &b.path))
        });
        self.diagnostics.dedup();
    }

    /// `file:line:column: severity[code]: path: message`, the line quoted (at most
    /// [`EXCERPT_CHARS`] characters around the column) and underlined, then a summary line.
    /// The values of secret keys are masked in the quoted lines (registered secrets are the
    /// output door's to mask); control characters are escaped so that nothing from an input
    /// file reaches the terminal raw.
    pub fn render_text(&self) -> String {
        let lines: Vec<(&Path, Vec<&str>)> = self
            .sources
            .iter()
            .map(|(file, text)| (file.as_path(), text.lines().collect()))
            .collect();
        let source_line = |file: &Path, line: usize| {
            let (_, lines) = lines.iter().find(|(f, _)| *f == file)?;
            lines.get(line.checked_sub(1)?).copied()
        };
        // Findings are sorted by line, so one masked line serves all the findings on it.
        let mut masked: Option<(&Path, usize, Vec<char>)> = None;
        let mut out = String::new();
        for d in &self.diagnostics {
            let path = if d.path.is_empty() {
                String::new()
            } else {
                format!("{}: ", d.path)
            };
            let _ = writeln!(
                out,
                "{}:{}:{}: {}[{}]: {path}{}",
                d.file.display(),
                d.pos.line,
                d.pos.column,
                d.severity.as_str(),
                d.rule.code(),
                d.message
            );
            if let Some(line) = source_line(&d.file, d.pos.line) {
                if !matches!(&masked, Some((f, n, _)) if *f == d.file && *n == d.pos.line) {
                    let chars = mask_line(line).chars().collect();
                    masked = Some((&d.file, d.pos.line, chars));
                }
                let line = masked.as_ref().map_or(&[][..], |(_, _, chars)| chars);
                let number = d.pos.line.to_string();
                let gutter = " ".repeat(number.len());
                let quoted = Excerpt::new(line, d.pos.column, d.width);
                let _ = writeln!(out, "{gutter} |");
                let _ = writeln!(out, "{number} | {}", quoted.text);
                let _ = writeln!(
                    out,
                    "{gutter} | {}{}",
                    " ".repeat(quoted.column),
                    "^".repeat(quoted.width)
                );
            }
            if let Some(help) = &d.help {
                let _ = writeln!(out, "  = help: {help}");
            }
            out.push('\n');
        }
        let _ = writeln!(out, "{}", self.summary());
        escape_control(&out)
    }

    /// `N errors, M warnings` (or `no problems found`).
    pub fn summary(&self) -> String {
        let (errors, warnings) = (self.errors(), self.warnings());
        if errors == 0 && warnings == 0 {
            return "no problems found".to_string();
        }
        format!(
            "{} {}, {} {}",
            errors,
            plural(errors, "error"),
            warnings,
            plural(warnings, "warning")
        )
    }

    /// The findings, as the JSON documents write them.
    pub fn findings(&self) -> Vec<Finding<'_>> {
        self.diagnostics.iter().map(Finding::from).collect()
    }
}

/// The part of a source line a finding quotes, and where its underline goes.
#[derive(Debug, PartialEq, Eq)]
struct Excerpt {
    /// At most [`EXCERPT_CHARS`] characters of the line, `…` where it was cut, control
    /// characters escaped.
    text: String,
    /// Characters of `text` before the underline.
    column: usize,
    /// Characters underlined (at least one).
    width: usize,
}

impl Excerpt {
    /// The excerpt of `line` around the 1-based `column`, underlining `width` characters.
    fn new(chars: &[char], column: usize, width: usize) -> Excerpt {
        let at = column.saturating_sub(1).min(chars.len());
        let start = at
            .saturating_sub(EXCERPT_CHARS / 2)
            .min(chars.len().saturating_sub(EXCERPT_CHARS));
        let end = (start + EXCERPT_CHARS).min(chars.len());
        let mut excerpt = Excerpt {
            text: String::new(),
            column: 0,
            width: 0,
        };
        let mut shown = 0;
        if start > 0 {
            excerpt.text.push('…');
            shown += 1;
        }
        for (i, c) in chars[start..end].iter().enumerate() {
            let i = start + i;
            if i == at {
                excerpt.column = shown;
            }
            let len = match c.is_control() {
                true => {
                    let escaped = escape_control(&c.to_string());
                    excerpt.text.push_str(&escaped);
                    escaped.chars().count()
                }
                false => {
                    excerpt.text.push(*c);
                    1
                }
            };
            if i >= at && i < at + width {
                excerpt.width += len;
            }
            shown += len;
        }
        if at >= end {
            excerpt.column = shown;
        }
        if end < chars.len() {
            excerpt.text.push('…');
        }
        excerpt.width = excerpt.width.max(1);
        excerpt
    }
}

/// `text` with control characters other than tab and newline escaped (`\x1b`, `\u{9b}`), for
/// a terminal: an escape sequence in an input file is shown, not obeyed.
pub fn escape_control(text: &str) -> String {
    if !text
        .chars()
        .any(|c| c.is_control() && c != '\t' && c != '\n')
    {
        return text.to_string();
    }
    text.chars()
        .map(|c| match c {
            '\t' | '\n' => c.to_string(),
            c if c.is_control() && (c as u32) < 0x80 => format!("\\x{:02x}", c as u32),
            c if c.is_control() => c.escape_unicode().to_string(),
            c => c.to_string(),
        })
        .collect()
}

pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        word.to_string()
    } else {
        format!("{word}s")
    }
}

/// The closest candidate to `word` when it is plausibly a typo of it.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_lowercase();
    let length = lower.chars().count();
    candidates
        .into_iter()
        .filter_map(|c| {
            let limit = (c.chars().count() / 3).max(2);
            // The distance is at least the difference in length: most candidates are ruled out
            // without computing it, which keeps 20,000 unknown keys cheap.
            if c.chars().count().abs_diff(length) > limit {
                return None;
            }
            let distance = strsim::damerau_levenshtein(&lower, &c.to_lowercase());
            (distance <= limit).then_some((distance, c))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique() {
        let mut codes: Vec<_> = Rule::ALL.iter().map(|r| r.code()).collect();
        codes.sort();
        let before = codes.len();
        codes.dedup();
        assert_eq!(before, codes.len());
    }

    #[test]
    fn applies_edits_by_character_offset() {
        let text = "ä: x\nb: y\n";
        let edits = [
            Edit::replace(3, 4, "\"eA==\"".into()),
            Edit::replace(4, 4, "\n  c: true".into()),
        ];
        assert_eq!(apply_edits(text, &edits), "ä: \"eA==\"\n  c: true\nb: y\n");
    }

    #[test]
    fn excerpts_quote_at_most_their_limit_around_the_column() {
        let long = format!("x: {}", "a".repeat(1_000_000));
        let long: Vec<char> = long.chars().collect();
        let excerpt = Excerpt::new(&long, 500_000, 3);
        assert_eq!(excerpt.text.chars().count(), EXCERPT_CHARS + 2);
        assert!(excerpt.text.starts_with('…') && excerpt.text.ends_with('…'));
        assert_eq!((excerpt.column, excerpt.width), (EXCERPT_CHARS / 2 + 1, 3));
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        let short = Excerpt::new(&chars("password: x"), 11, 1);
        assert_eq!((short.text.as_str(), short.column), ("password: x", 10));
        assert_eq!(Excerpt::new(&chars("a: b"), 5, 1).column, 4);
    }

    #[test]
    fn control_characters_are_escaped_and_underlined_whole() {
        assert_eq!(escape_control("a\u{1b}[31mb\tc\n"), "a\\x1b[31mb\tc\n");
        assert_eq!(escape_control("\u{9b}"), "\\u{9b}");
        let line: Vec<char> = "x: \u{1b}[2J".chars().collect();
        let excerpt = Excerpt::new(&line, 4, 2);
        assert_eq!(excerpt.text, "x: \\x1b[2J");
        assert_eq!((excerpt.column, excerpt.width), (3, 5));
    }

    #[test]
    fn suggests_near_misses_only() {
        let keys = ["registryCredentials", "externalRegistries", "site"];
        assert_eq!(
            did_you_mean("registryCredentails", keys),
            Some("registryCredentials")
        );
        assert_eq!(did_you_mean("Site", keys), Some("site"));
        assert_eq!(did_you_mean("completelyDifferent", keys), None);
    }
}
