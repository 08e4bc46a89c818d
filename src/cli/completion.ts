/**
 * `velero-download completion bash|zsh`: a completion script built from the command line's own
 * tables (commands, subcommands, flags), so it cannot drift from what the parser accepts. zsh gets
 * the same function through zsh's bashcompinit. Completion offers words only: it never runs kubectl
 * or reads a cluster, so pressing Tab costs nothing and reveals nothing.
 */
import { OPTIONS, SUBCOMMANDS, VOLUME_SUBCOMMANDS } from './args.ts';
import { artifactNames } from '../velero/artifacts.ts';

/** Flags whose value is a file name: Tab completes file names after them. */
const FILE_FLAGS = ['--kubeconfig', '--cacert', '--password-file', '--token-file', '--output', '-o'];

function bashFunction(): string {
  const flags = Object.entries(OPTIONS).flatMap(([name, o]) => [`--${name}`, ...('short' in o ? [`-${o.short}`] : [])]);
  const valued = Object.entries(OPTIONS)
    // --velero-server-url's value is optional (and given with "=" when there is one).
    .filter(([name, o]) => o.type === 'string' && name !== 'velero-server-url')
    .flatMap(([name, o]) => [`--${name}`, ...('short' in o ? [`-${o.short}`] : [])]);
  const backup = ['describe', ...Object.keys(SUBCOMMANDS.backups), ...VOLUME_SUBCOMMANDS].join(' ');
  const restore = Object.keys(SUBCOMMANDS.restores).join(' ');
  const get = [...artifactNames('backups').map((a) => `backups/NAME/${a}`), ...artifactNames('restores').map((a) => `restores/NAME/${a}`)].join(' ');
  return `_velero_download() {
  local cur prev words=() i
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev="\${COMP_WORDS[COMP_CWORD-1]}"
  case " ${FILE_FLAGS.join(' ')} " in *" $prev "*) COMPREPLY=($(compgen -f -- "$cur")); return;; esac
  case " ${valued.join(' ')} " in *" $prev "*) COMPREPLY=(); return;; esac
  if [[ "$cur" == -* ]]; then COMPREPLY=($(compgen -W "${flags.join(' ')}" -- "$cur")); return; fi
  # The words so far without flags and their values: the command, then its subcommand.
  for ((i = 1; i < COMP_CWORD; i++)); do
    case " ${valued.join(' ')} " in *" \${COMP_WORDS[i]} "*) ((i++)); continue;; esac
    [[ "\${COMP_WORDS[i]}" == -* ]] || words+=("\${COMP_WORDS[i]}")
  done
  case "\${#words[@]}:\${words[0]}" in
    0:) COMPREPLY=($(compgen -W "backup restore get completion hash-password" -- "$cur"));;
    1:backup) COMPREPLY=($(compgen -W "${backup}" -- "$cur"));;
    1:restore) COMPREPLY=($(compgen -W "${restore}" -- "$cur"));;
    1:get) COMPREPLY=($(compgen -W "${get}" -- "$cur"));;
    1:completion) COMPREPLY=($(compgen -W "bash zsh" -- "$cur"));;
    *) COMPREPLY=();;
  esac
}
complete -F _velero_download velero-download
`;
}

/** The script for `shell`. */
export function completionScript(shell: 'bash' | 'zsh'): string {
  const head = `# velero-download completion for ${shell}: source <(velero-download completion ${shell})\n`;
  if (shell === 'bash') return head + bashFunction();
  return `#compdef velero-download\n${head}autoload -U +X bashcompinit && bashcompinit\n${bashFunction()}`;
}
