# Hash and regex churn for scripts/stress.sh: large hashes built and torn down, regex matches
# with captures and substitutions, string building, sorting, nested data and closures, all
# deterministic (run with PERL_HASH_SEED=0 PERL_PERTURB_KEYS=0): prints counts and checksums.
#
# Usage: perl churn.pl [ROUNDS]      (default 20)
use strict;
use warnings;

my $rounds = shift // 20;
my @words = qw(alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau);
my $checksum = 0;
my $matches = 0;

sub fold { my ($sum, $text) = @_; $sum = ($sum * 33 + ord($_)) % 4294967291 for split //, substr($text, 0, 64); return $sum; }

for my $round (1 .. $rounds) {
  my %table;
  for my $i (1 .. 20000) {
    my $key = $words[($i * 7 + $round) % @words] . '-' . ($i % 997);
    push @{ $table{$key} }, { id => $i, label => "item $i of round $round", tags => [ $i % 3, $i % 5 ] };
  }
  my $text = join "\n", map { "$_=" . scalar(@{ $table{$_} }) } sort keys %table;
  while ($text =~ /^(\w+)-(\d+)=(\d+)$/mg) {
    $matches++;
    $checksum = ($checksum + $2 * $3 + length $1) % 4294967291;
  }
  (my $shouted = $text) =~ s/([aeiou])(\w)/\U$1\E$2/g;
  $checksum = fold($checksum, $shouted);
  my @sorted = sort { @{ $table{$b} } <=> @{ $table{$a} } || $a cmp $b } keys %table;
  my @closures = map { my $n = $_; sub { $n * $round } } 1 .. 500;
  $checksum = ($checksum + $_->()) % 4294967291 for @closures;
  $checksum = fold($checksum, join ',', @sorted[0 .. 9]);
  my %inverted = map { $_->{label} => $_->{id} } map { @$_ } values %table;
  $checksum = ($checksum + scalar(keys %inverted)) % 4294967291;
  undef %table;
}
printf "%d rounds, %d regex matches, checksum %u\n", $rounds, $matches, $checksum;
