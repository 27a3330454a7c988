set terminal png size 1000,650
set output 'docs/quality/quality_kl.png'
set logscale xy
set xlabel 'compaction ratio'
set ylabel 'mean KL(full || compacted), nats'
set title 'stories260K: held-out KL against compaction ratio'
set key outside right
set grid
plot 'docs/quality/quality_kl.dat' index 0 using 1:2 with linespoints lw 2 lc rgb '#1f77b4' title 'AM (highest attention)', 'docs/quality/quality_kl.dat' index 1 using 1:2 with linespoints lw 2 lc rgb '#ff7f0e' title 'AM (OMP-fast)', 'docs/quality/quality_kl.dat' index 2 using 1:2 with linespoints lw 2 lc rgb '#2ca02c' title 'OK-DMD', 'docs/quality/quality_kl.dat' index 3 using 1:2 with linespoints lw 2 lc rgb '#d62728' title 'OK-DMD select + AM fit', 'docs/quality/quality_kl.dat' index 4 using 1:2 with linespoints lw 2 lc rgb '#9467bd' title 'DynamicKV', 'docs/quality/quality_kl.dat' index 5 using 1:2 with linespoints lw 2 lc rgb '#8c564b' title 'D2O', 'docs/quality/quality_kl.dat' index 6 using 1:2 with linespoints lw 2 lc rgb '#e377c2' title 'H2O', 'docs/quality/quality_kl.dat' index 7 using 1:2 with linespoints lw 2 lc rgb '#7f7f7f' title 'SnapKV', 'docs/quality/quality_kl.dat' index 8 using 1:2 with linespoints lw 2 lc rgb '#bcbd22' title 'StreamingLLM', 'docs/quality/quality_kl.dat' index 9 using 1:2 with linespoints lw 2 lc rgb '#17becf' title 'PyramidKV'
